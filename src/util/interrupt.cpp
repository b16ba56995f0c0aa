#include "arcflow/util/interrupt.h"

#include <csignal>
#include <unistd.h>

namespace arcflow {

namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_signal(int sig) {
  if (g_signal != 0) {
    // Second signal: the user insists; leave without running destructors.
    _exit(128 + sig);
  }
  g_signal = sig;
  const char msg[] = "\narcflow: interrupted; finishing the current step and writing a checkpoint (again to quit now)\n";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() { return g_signal != 0; }
int interrupt_signal() { return static_cast<int>(g_signal); }
void set_interrupted(bool value) { g_signal = value ? SIGINT : 0; }

}  // namespace arcflow
