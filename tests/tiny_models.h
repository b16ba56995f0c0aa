// The small DiT the tests build (a forward pass takes milliseconds): 8x8 images in 4x4 patches (4
// tokens), 2 heads, 3 classes, with the channels, width and depth a test asks for.
#pragma once

#include "arcflow/models/dit/dit.h"

namespace arcflow::test {

inline DiTConfig tiny_dit(int64_t in_channels = 1, int64_t width = 16, int64_t depth = 1) {
  DiTConfig c;
  c.in_channels = in_channels;
  c.image_size = 8;
  c.patch = 4;
  c.width = width;
  c.depth = depth;
  c.heads = 2;
  c.num_classes = 3;
  return c;
}

}  // namespace arcflow::test
