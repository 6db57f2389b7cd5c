// Reports the C layout of every event struct, so a test can hold the TypeScript decoders to it.
#include "layout.h"

#include <linux/types.h>

#include <cstddef>

#include "usdtrace.h"

#define FIELD(type, field) fields.Set(#field, Napi::Number::New(env, offsetof(struct type, field)))

Napi::Object EventLayouts(Napi::Env env) {
  Napi::Object layouts = Napi::Object::New(env);
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(call_event, timestamp_ns);
    FIELD(call_event, duration_ns);
    FIELD(call_event, pid);
    FIELD(call_event, tid);
    FIELD(call_event, line);
    FIELD(call_event, depth);
    FIELD(call_event, kind);
    FIELD(call_event, flags);
    FIELD(call_event, file_len);
    FIELD(call_event, func_len);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct call_event)));
    layout.Set("fields", fields);
    layouts.Set("call_event", layout);
  }
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("USDTRACE_NAME_MAX", Napi::Number::New(env, USDTRACE_NAME_MAX));
  constants.Set("CALL_ENTRY", Napi::Number::New(env, CALL_ENTRY));
  constants.Set("CALL_RETURN", Napi::Number::New(env, CALL_RETURN));
  constants.Set("CALL_HAS_DURATION", Napi::Number::New(env, CALL_HAS_DURATION));
  constants.Set("CALL_FILE_TRUNCATED", Napi::Number::New(env, CALL_FILE_TRUNCATED));
  constants.Set("CALL_FUNC_TRUNCATED", Napi::Number::New(env, CALL_FUNC_TRUNCATED));
  layouts.Set("constants", constants);
  return layouts;
}
