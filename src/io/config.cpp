#include "arcflow/io/config.h"

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

namespace arcflow::io {

namespace {

// A scalar TOML value as the text a command-line flag would carry; false when not a scalar.
bool scalar_text(const toml::node& n, std::string& out) {
  if (auto v = n.as_string()) { out = v->get(); return true; }
  if (auto v = n.as_integer()) { out = std::to_string(v->get()); return true; }
  if (auto v = n.as_boolean()) { out = v->get() ? "true" : "false"; return true; }
  if (auto v = n.as_floating_point()) {
    std::ostringstream s;
    s.precision(17);
    s << v->get();
    out = s.str();
    return true;
  }
  return false;
}

}  // namespace

std::vector<ConfigEntry> parse_config(std::istream& in, const std::string& source) {
  toml::table tbl;
  try {
    tbl = toml::parse(in, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw std::runtime_error(source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": " +
                             std::string(e.description()));
  }
  std::vector<ConfigEntry> out;
  for (const auto& [k, node] : tbl) {
    ConfigEntry e;
    e.key = std::string(k.str());
    for (char& c : e.key)
      if (c == '_') c = '-';
    e.line = static_cast<int>(node.source().begin.line);
    const std::string where = source + ":" + std::to_string(e.line) + ": '" + std::string(k.str()) + "'";
    std::string text;
    if (scalar_text(node, text)) {
      e.values.push_back(text);
    } else if (auto arr = node.as_array()) {
      for (const auto& el : *arr) {
        if (!scalar_text(el, text)) throw std::runtime_error(where + ": arrays may hold only plain values");
        e.values.push_back(text);
      }
    } else if (node.is_table()) {
      throw std::runtime_error(where + ": tables are not supported; write every setting as a top-level key "
                                       "named like its command-line flag");
    } else {
      throw std::runtime_error(where + ": unsupported value type (use a string, number, boolean or array)");
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ConfigEntry> read_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open config file");
  return parse_config(in, path);
}

}  // namespace arcflow::io
