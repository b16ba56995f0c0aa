// Keeping a table row's samples on disk while they are generated, so that a long `arcflow eval`
// (the guided 100-NFE teacher over 5,000 images takes over an hour on two CPU cores) can stop, from
// Ctrl-C or a time limit, and continue later where it stopped, and so that a repeated evaluation
// reuses rows it has already made.
//
// One safetensors file per row: tensor "samples" (n, ...) float32, of which the first `done` images
// are valid, and metadata "arcflow_row_cache" (the key, JSON), "done" and "seconds" (generation time
// summed over the sessions that made it). The key says everything the images depend on (the row's
// sampler and settings, n, seed, image shape, batch size, and a digest of the network's weights); a
// file whose key differs, or that cannot be read, is not used: the row is made again and the file
// replaced (a note says why). Files are written atomically after every batch.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace arcflow {

// A digest of a module's parameters and buffers (names, dtypes, shapes and bytes): 64-bit FNV-1a as
// 16 hex digits. Equal weights give equal digests on any device.
std::string parameter_digest(torch::nn::Module& module);

struct RowCache {
  std::string path;      // empty: no file (nothing is read or written)
  nlohmann::json key;
  torch::Tensor samples;  // (n, ...) float32 CPU; rows [0, done) are valid
  int64_t done = 0;
  double seconds = 0;    // generation time of rows [0, done)
};

// Opens the cache at `path` (empty path: an in-memory cache) for a row of samples of `shape` (n, ...).
// Reuses the file's rows when its key equals `key` and its tensor has that shape; otherwise starts
// empty and, if `note` is given, explains there why the file is not used ("" when it is or when there
// is none).
RowCache open_row_cache(const std::string& path, const nlohmann::json& key, const std::vector<int64_t>& shape,
                        std::string* note = nullptr);

// Writes the cache (atomically) when it has a path.
void save_row_cache(const RowCache& cache);

}  // namespace arcflow
