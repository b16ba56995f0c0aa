// The page of `arcflow serve` (src/server/page/index.html), embedded into the binary at build time.
#pragma once

#include <string>

namespace arcflow::server {

const std::string& index_html();

}  // namespace arcflow::server
