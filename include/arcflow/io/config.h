// Config files (TOML) for the command line: every key of a file is also a flag of the command
// that reads it, so `lr = 3e-4` in a file means `--lr 3e-4`, and a flag given on the command line
// wins over the file. This file only reads TOML into flat (key, values) entries; the CLI maps them
// onto its flags.
#pragma once

#include <istream>
#include <string>
#include <vector>

namespace arcflow::io {

struct ConfigEntry {
  std::string key;                  // the flag's long name, '_' normalised to '-'
  std::vector<std::string> values;  // one per array element; booleans "true"/"false"
  int line = 0;                     // where the key is, for error messages
};

// Parses TOML. Keys must be top-level (flag names); values strings, integers, floats, booleans or
// flat arrays of those. Throws std::runtime_error "SOURCE:LINE:COL: problem" for a syntax error and
// "SOURCE:LINE: problem" for a table, nested array or date value.
std::vector<ConfigEntry> parse_config(std::istream& in, const std::string& source);
std::vector<ConfigEntry> read_config(const std::string& path);  // errors name `path`

}  // namespace arcflow::io
