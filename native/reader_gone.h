#pragma once
#include <napi.h>

// watchReaderGone(fd, onGone): calls onGone once when nobody reads `fd` any more: the last reader
// of a pipe closed it (`| head` exited), or a socket's peer hung up. A writer otherwise learns
// that only at its next write, which a quiet trace may not make for hours while its probes slow
// the target. Returns false for what cannot go away (a file, a terminal is left to SIGHUP).
Napi::Value WatchReaderGone(const Napi::CallbackInfo& info);
