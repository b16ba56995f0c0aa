#include "config_file.h"

#include <memory>

#include "arcflow/io/config.h"

namespace arcflow::cli {

// CLI11 2.1 reads config files only for the top-level app, so `--config` is an option whose callback
// fills the subcommand's other options itself, as CLI11's own config reader does: a key becomes the
// results of the option of the same long name, unless that option was given on the command line.
void add_config_option(CLI::App* sub) {
  sub->add_option_function<std::string>(
      "--config",
      [sub](const std::string& path) {
        std::vector<io::ConfigEntry> entries;
        try {
          entries = io::read_config(path);
        } catch (const std::exception& e) {
          throw CLI::ConversionError(std::string(e.what()));
        }
        for (const auto& e : entries) {
          CLI::Option* o = sub->get_option_no_throw("--" + e.key);
          if (o == nullptr || e.key == "config")
            throw CLI::ConversionError(path + ":" + std::to_string(e.line) + ": unknown key '" + e.key +
                                       "' (keys are the long flags of `arcflow " + sub->get_name() +
                                       "`; see --help)");
          if (o->count() > 0) continue;  // the command line wins
          o->clear();
          for (const auto& v : e.values) o->add_result(v);
          try {
            o->run_callback();
          } catch (const CLI::Error& err) {
            throw CLI::ConversionError(path + ":" + std::to_string(e.line) + ": " + e.key + ": " + err.what());
          }
        }
      },
      "TOML file of settings: top-level keys named like the long flags (e.g. lr = 3e-4); flags given on the "
      "command line win");
}

}  // namespace arcflow::cli
