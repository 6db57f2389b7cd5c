// libbpf's warnings (verifier logs, attach failures) are kept, not printed, and attached to the
// error that follows them, so a failure explains itself without noise on the user's stderr.
#pragma once
#include <string>

void CaptureLibbpfLog();
std::string TakeLibbpfLog();
