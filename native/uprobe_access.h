#pragma once
#include <napi.h>

// uprobeAccess(pmuType): the errno of a perf_event_open on the uprobe PMU that names no probe:
// EACCES or EPERM if this process may not create uprobes, EINVAL if it may.
Napi::Value UprobeAccess(const Napi::CallbackInfo& info);
