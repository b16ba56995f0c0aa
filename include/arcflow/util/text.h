// Small text helpers every layer uses: numbers as printf writes them, folder paths, XML/HTML escaping.
#pragma once

#include <string>

namespace arcflow {

// One number in a printf format taking a double: format_number(0.25) = "0.25" (%g),
// format_number(0.123456, "%.4g") = "0.1235".
std::string format_number(double v, const char* format = "%g");
// The shortest %g text that reads back (strtod) as exactly v: 3.2 -> "3.2", exp(1.15) ->
// "3.1581929096897676"; for numbers stored in files.
std::string format_exact(double v);
// folder + "/" + name with exactly one slash between (name alone when folder is empty).
std::string join_path(const std::string& folder, const std::string& name);
// & < > " as entities, for text and attribute values in HTML and SVG.
std::string xml_escape(const std::string& s);

}  // namespace arcflow
