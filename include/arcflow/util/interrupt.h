// Ctrl-C and SIGTERM for long runs: the first signal only raises a flag that training loops poll
// (so they can write a checkpoint and stop cleanly); a second one ends the process at once.
#pragma once

namespace arcflow {

void install_interrupt_handler();
bool interrupted();
// The signal number that raised the flag (0 if none).
int interrupt_signal();
// For tests: raise or clear the flag as if a signal came.
void set_interrupted(bool value);

}  // namespace arcflow
