// The TOML settings reader on text toml++ 3.3.0 mishandles: non-ASCII characters where the parser
// looks for whitespace reach __builtin_unreachable() inside toml++ (found by tests/fuzz/fuzz_config;
// marzer/tomlplusplus#295 and #190). The reader must give the same answers as for ASCII text, and
// clear errors, without ever letting toml++ see those characters.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "arcflow/io/config.h"

using arcflow::io::ConfigEntry;
using arcflow::io::parse_config;

namespace {

std::vector<ConfigEntry> parse(const std::string& text) {
  std::istringstream in(text);
  return parse_config(in, "s.toml");
}

std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(ConfigText, NonAsciiInStringsCommentsAndQuotedKeysIsKept) {
  const auto e = parse("name = \"caf\xc3\xa9 \xef\xbb\xbb \xc2\xa7\"  # commentaire \xc3\xa9t\xc3\xa9\n"
                       "lit = 'x\xe3\x80\x81y'\n"
                       "\"cl\xc3\xa9\" = [\"\xf0\x9f\x98\x80\", \"plain\"]\n");
  ASSERT_EQ(e.size(), 3u);
  std::map<std::string, std::vector<std::string>> got;
  for (const auto& x : e) got[x.key] = x.values;
  EXPECT_EQ(got.at("name"), std::vector<std::string>{"caf\xc3\xa9 \xef\xbb\xbb \xc2\xa7"});
  EXPECT_EQ(got.at("lit"), std::vector<std::string>{"x\xe3\x80\x81y"});
  EXPECT_EQ(got.at("cl\xc3\xa9"), (std::vector<std::string>{"\xf0\x9f\x98\x80", "plain"}));
}

TEST(ConfigText, LineEndingBackslashBeforeNonAscii) {
  // toml++ issue 190: this valid document made the parser reach its unreachable point.
  const auto e = parse("s = \"\"\"\\\n\xc2\xa7\"\"\"\n");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].values, std::vector<std::string>{"\xc2\xa7"});
}

TEST(ConfigText, StrayNonAsciiIsAnErrorAtTheSamePlaceAsAnAsciiLetter) {
  // The fuzzer's input (U+FEFB alone) and a letter where a value should end; the reference is
  // what toml++ itself says for the same text with an ASCII letter in place of the character.
  EXPECT_EQ(error_of("\xef\xbb\xbb").substr(0, 11), error_of("x").substr(0, 11));
  EXPECT_NE(error_of("\xef\xbb\xbb"), "(no error)");
  const std::string with_letter = error_of("a = 1\nb = 2 x\n");
  const std::string with_char = error_of("a = 1\nb = 2 \xc2\xa7\n");
  ASSERT_EQ(with_letter.rfind("s.toml:2:7: ", 0), 0u) << with_letter;
  EXPECT_EQ(with_char.rfind("s.toml:2:7: ", 0), 0u) << with_char;
  // Column counts characters, not bytes, after earlier non-ASCII text on the line.
  EXPECT_EQ(error_of("k = \"\xc3\xa9\xc3\xa9\" x\n").rfind("s.toml:1:10: ", 0), 0u) << error_of("k = \"\xc3\xa9\xc3\xa9\" x\n");
}

TEST(ConfigText, InvalidUtf8IsRefusedWithItsPosition) {
  EXPECT_EQ(error_of("a = 1\nb = \"\xc3\x28\"\n").rfind("s.toml:2:6: invalid UTF-8", 0), 0u);
  EXPECT_EQ(error_of("x = \"\xed\xa0\x80\"").rfind("s.toml:1:6: invalid UTF-8", 0), 0u);  // a surrogate
  EXPECT_EQ(error_of("x = \"\xc0\xaf\"").rfind("s.toml:1:6: invalid UTF-8", 0), 0u);      // overlong '/'
  EXPECT_EQ(error_of("x = \"\xf4\x90\x80\x80\"").rfind("s.toml:1:6: invalid UTF-8", 0), 0u);  // > U+10FFFF
}

TEST(ConfigText, TextThatLooksLikeAPlaceholderIsLeftAlone) {
  const auto e = parse("a = \"NonAscii0Z \xc3\xa9\"\nb = \"NonAscii\"\n");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].values, std::vector<std::string>{"NonAscii0Z \xc3\xa9"});
  EXPECT_EQ(e[1].values, std::vector<std::string>{"NonAscii"});
}
