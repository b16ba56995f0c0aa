// util/text.h: the helpers every layer shares, against hand-written expectations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "arcflow/util/text.h"

namespace arcflow {
namespace {

TEST(Text, FormatNumberIsPrintfOfOneDouble) {
  EXPECT_EQ(format_number(0.25), "0.25");
  EXPECT_EQ(format_number(3.2), "3.2");
  EXPECT_EQ(format_number(1e-7), "1e-07");
  EXPECT_EQ(format_number(0.123456, "%.4g"), "0.1235");
  EXPECT_EQ(format_number(2.0, "%.3f"), "2.000");
  EXPECT_EQ(format_number(12345678.0, "%.0f ms"), "12345678 ms");
}

TEST(Text, FormatExactIsTheShortestTextThatReadsBack) {
  EXPECT_EQ(format_exact(3.2), "3.2");
  EXPECT_EQ(format_exact(1.0), "1");
  EXPECT_EQ(format_exact(128.0), "128");
  EXPECT_EQ(format_exact(0.1 + 0.2), "0.30000000000000004");
  for (double v : {std::exp(1.15), 1.0 / 3.0, 6.02214076e23, -2.5e-300}) {
    const std::string t = format_exact(v);
    EXPECT_EQ(std::strtod(t.c_str(), nullptr), v) << t;
    int digits = 0;  // significant digits of t's mantissa
    bool leading = true;
    for (char c : t.substr(0, t.find('e'))) {
      if (c < '0' || c > '9') continue;
      if (c != '0') leading = false;
      if (!leading) ++digits;
    }
    char shorter[40];
    std::snprintf(shorter, sizeof shorter, "%.*g", digits - 1, v);
    EXPECT_NE(std::strtod(shorter, nullptr), v) << t << " vs " << shorter;
  }
}

TEST(Text, JoinPathPutsOneSlashBetween) {
  EXPECT_EQ(join_path("a", "b.json"), "a/b.json");
  EXPECT_EQ(join_path("a/", "b.json"), "a/b.json");
  EXPECT_EQ(join_path("", "b.json"), "b.json");
  EXPECT_EQ(join_path("/", "b"), "/b");
}

TEST(Text, XmlEscapeReplacesTheFourSpecials) {
  EXPECT_EQ(xml_escape("a < b & c > \"d\""), "a &lt; b &amp; c &gt; &quot;d&quot;");
  EXPECT_EQ(xml_escape("plain 'text' é"), "plain 'text' é");
  EXPECT_EQ(xml_escape(""), "");
}

}  // namespace
}  // namespace arcflow
