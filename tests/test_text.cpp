// util/text.h: the helpers every layer shares, against hand-written expectations.
#include <gtest/gtest.h>

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
