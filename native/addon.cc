#include <napi.h>

#include "libbpf_log.h"
#include "reader_gone.h"
#include "session.h"
#include "uprobe_access.h"
#include "uprobe_multi.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  CaptureLibbpfLog();
  exports.Set("Session", Session::Define(env));
  exports.Set("uprobeAccess", Napi::Function::New(env, UprobeAccess));
  exports.Set("uprobeMultiLinks", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), UprobeMultiSupported());
  }));
  exports.Set("watchReaderGone", Napi::Function::New(env, WatchReaderGone));
  return exports;
}

NODE_API_MODULE(usdtrace, Init)
