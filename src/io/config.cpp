#include "arcflow/io/config.h"

#include <cctype>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>
#include <utility>

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

// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable(), i.e. undefined behaviour, when certain
// non-ASCII characters (U+00A1..U+0499, U+2CFE..U+30F7, U+FC5A..U+FEFE, ...) stand where it checks
// for whitespace: found by tests/fuzz/fuzz_config, known upstream (marzer/tomlplusplus#295, fixed
// after 3.3.0). So toml++ only ever sees ASCII: each run of non-ASCII characters becomes a
// placeholder of letters and digits (allowed wherever the original was: strings, comments, quoted
// keys; an error wherever the original was one), put back in keys and strings after parsing.
struct AsciiText {
  std::string text, marker;          // placeholder k is marker + k + "Z"; marker is not in the input
  std::vector<std::string> runs;     // the original bytes of each placeholder
};

std::runtime_error at(const std::string& source, const std::string& bytes, size_t pos, const std::string& what) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (bytes[i] == '\n') line += 1, col = 1;
    else if ((static_cast<unsigned char>(bytes[i]) & 0xC0) != 0x80) col += 1;  // count code points
  }
  return std::runtime_error(source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
}

// Length of the valid UTF-8 sequence at bytes[i] (a byte >= 0x80), or 0 when it is invalid
// (truncated, overlong, a surrogate, above U+10FFFF).
size_t utf8_length(const std::string& b, size_t i) {
  const auto u = [&](size_t k) { return k < b.size() ? static_cast<unsigned char>(b[k]) : 0u; };
  const unsigned c = u(i);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
  if (c > 0xF4) n = 0;
  for (size_t k = 1; k < n; ++k)
    if ((u(i + k) & 0xC0) != 0x80) return 0;
  if ((c == 0xE0 && u(i + 1) < 0xA0) || (c == 0xED && u(i + 1) >= 0xA0) || (c == 0xF0 && u(i + 1) < 0x90) ||
      (c == 0xF4 && u(i + 1) >= 0x90))
    return 0;
  return n;
}

AsciiText to_ascii(const std::string& bytes, const std::string& source) {
  AsciiText a;
  a.marker = "NonAscii";
  while (bytes.find(a.marker) != std::string::npos) a.marker += 'x';
  for (size_t i = 0; i < bytes.size();) {
    if (static_cast<unsigned char>(bytes[i]) < 0x80) {
      a.text += bytes[i++];
      continue;
    }
    const size_t start = i;
    while (i < bytes.size() && static_cast<unsigned char>(bytes[i]) >= 0x80) {
      const size_t n = utf8_length(bytes, i);
      if (n == 0) throw at(source, bytes, i, "invalid UTF-8");
      i += n;
    }
    a.text += a.marker + std::to_string(a.runs.size()) + "Z";
    a.runs.push_back(bytes.substr(start, i - start));
  }
  return a;
}

// The placeholder starting at s[pos], if one does: its index in a.runs and the position after it.
std::optional<std::pair<size_t, size_t>> placeholder_at(const AsciiText& a, const std::string& s, size_t pos) {
  if (s.compare(pos, a.marker.size(), a.marker) != 0) return std::nullopt;
  size_t q = pos + a.marker.size(), k = 0;
  while (q < s.size() && std::isdigit(static_cast<unsigned char>(s[q]))) k = 10 * k + (s[q++] - '0');
  if (q < s.size() && s[q] == 'Z' && k < a.runs.size()) return std::make_pair(k, q + 1);
  return std::nullopt;
}

std::string restore(const AsciiText& a, std::string s) {
  if (a.runs.empty()) return s;
  for (size_t p = 0; (p = s.find(a.marker, p)) != std::string::npos;) {
    if (const auto ph = placeholder_at(a, s, p)) {
      s.replace(p, ph->second - p, a.runs[ph->first]);
      p += a.runs[ph->first].size();
    } else {
      p += a.marker.size();
    }
  }
  return s;
}

// The column of the original text for a column of the ASCII text on the same line.
size_t original_column(const AsciiText& a, size_t line, size_t column) {
  size_t pos = 0;
  for (size_t l = 1; l < line && pos != std::string::npos; ++l) pos = a.text.find('\n', pos), pos += pos != std::string::npos;
  if (pos == std::string::npos || a.runs.empty()) return column;
  size_t col = 1;
  for (size_t c = 1; c < column && pos < a.text.size() && a.text[pos] != '\n'; ++c) {
    if (const auto ph = placeholder_at(a, a.text, pos)) {
      const size_t last = ph->second - 1 - pos;  // columns the placeholder spans after its first
      if (column <= c + last) return col;        // inside the placeholder: its first character
      for (unsigned char ch : a.runs[ph->first]) col += (ch & 0xC0) != 0x80;
      c += last;
      pos = ph->second;
      continue;
    }
    ++col, ++pos;
  }
  return col;
}

}  // namespace

std::vector<ConfigEntry> parse_config(std::istream& in, const std::string& source) {
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const AsciiText ascii = to_ascii(bytes, source);
  toml::table tbl;
  try {
    tbl = toml::parse(ascii.text, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw std::runtime_error(source + ":" + std::to_string(b.line) + ":" +
                             std::to_string(original_column(ascii, b.line, b.column)) + ": " +
                             restore(ascii, std::string(e.description())));
  }
  std::vector<ConfigEntry> out;
  for (const auto& [k, node] : tbl) {
    ConfigEntry e;
    const std::string name = restore(ascii, std::string(k.str()));
    e.key = name;
    for (char& c : e.key)
      if (c == '_') c = '-';
    e.line = static_cast<int>(node.source().begin.line);
    const std::string where = source + ":" + std::to_string(e.line) + ": '" + name + "'";
    std::string text;
    if (scalar_text(node, text)) {
      e.values.push_back(restore(ascii, text));
    } else if (auto arr = node.as_array()) {
      for (const auto& el : *arr) {
        if (!scalar_text(el, text)) throw std::runtime_error(where + ": arrays may hold only plain values");
        e.values.push_back(restore(ascii, text));
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
