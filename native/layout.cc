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
    FIELD(call_event, cpu);
    FIELD(call_event, name_id);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct call_event)));
    layout.Set("fields", fields);
    layouts.Set("call_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(syscall_event, timestamp_ns);
    FIELD(syscall_event, duration_ns);
    FIELD(syscall_event, args);
    FIELD(syscall_event, ret);
    FIELD(syscall_event, pid);
    FIELD(syscall_event, tid);
    FIELD(syscall_event, nr);
    FIELD(syscall_event, detail_len);
    FIELD(syscall_event, flags);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct syscall_event)));
    layout.Set("fields", fields);
    layouts.Set("syscall_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(latency_stats, calls);
    FIELD(latency_stats, timed_calls);
    FIELD(latency_stats, total_ns);
    FIELD(latency_stats, self_ns);
    FIELD(latency_stats, min_ns);
    FIELD(latency_stats, max_ns);
    FIELD(latency_stats, histogram);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct latency_stats)));
    layout.Set("fields", fields);
    layouts.Set("latency_stats", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(function_stats, name_id);
    FIELD(function_stats, stats);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct function_stats)));
    layout.Set("fields", fields);
    layouts.Set("function_stats", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(function_names, file_len);
    FIELD(function_names, func_len);
    FIELD(function_names, truncated);
    FIELD(function_names, names);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct function_names)));
    layout.Set("fields", fields);
    layouts.Set("function_names", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(usdt_event, timestamp_ns);
    FIELD(usdt_event, pid);
    FIELD(usdt_event, tid);
    FIELD(usdt_event, arg_count);
    FIELD(usdt_event, flags);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct usdt_event)));
    layout.Set("fields", fields);
    layouts.Set("usdt_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(library_call_event, timestamp_ns);
    FIELD(library_call_event, duration_ns);
    FIELD(library_call_event, args);
    FIELD(library_call_event, return_value);
    FIELD(library_call_event, pid);
    FIELD(library_call_event, tid);
    FIELD(library_call_event, symbol);
    FIELD(library_call_event, depth);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct library_call_event)));
    layout.Set("fields", fields);
    layouts.Set("library_call_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(gc_event, start_ns);
    FIELD(gc_event, duration_ns);
    FIELD(gc_event, collected);
    FIELD(gc_event, pid);
    FIELD(gc_event, tid);
    FIELD(gc_event, generation);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct gc_event)));
    layout.Set("fields", fields);
    layouts.Set("gc_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(import_event, start_ns);
    FIELD(import_event, duration_ns);
    FIELD(import_event, pid);
    FIELD(import_event, tid);
    FIELD(import_event, depth);
    FIELD(import_event, flags);
    FIELD(import_event, name_len);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct import_event)));
    layout.Set("fields", fields);
    layouts.Set("import_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(audit_value, kind);
    FIELD(audit_value, flags);
    FIELD(audit_value, len);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct audit_value)));
    layout.Set("fields", fields);
    layouts.Set("audit_value", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(audit_event, timestamp_ns);
    FIELD(audit_event, pid);
    FIELD(audit_event, tid);
    FIELD(audit_event, name_len);
    FIELD(audit_event, args_len);
    FIELD(audit_event, flags);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct audit_event)));
    layout.Set("fields", fields);
    layouts.Set("audit_event", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(python_stats, calls);
    FIELD(python_stats, gc_runs);
    FIELD(python_stats, gc_collected);
    FIELD(python_stats, imports);
    FIELD(python_stats, threads);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct python_stats)));
    layout.Set("fields", fields);
    layouts.Set("python_stats", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(usdt_spec, cookie);
    FIELD(usdt_spec, arg_count);
    FIELD(usdt_spec, args);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct usdt_spec)));
    layout.Set("fields", fields);
    layouts.Set("usdt_spec", layout);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    FIELD(usdt_arg_spec, value);
    FIELD(usdt_arg_spec, kind);
    FIELD(usdt_arg_spec, reg);
    FIELD(usdt_arg_spec, size);
    FIELD(usdt_arg_spec, is_signed);
    Napi::Object layout = Napi::Object::New(env);
    layout.Set("size", Napi::Number::New(env, sizeof(struct usdt_arg_spec)));
    layout.Set("fields", fields);
    layouts.Set("usdt_arg_spec", layout);
  }
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("USDTRACE_NAME_MAX", Napi::Number::New(env, USDTRACE_NAME_MAX));
  constants.Set("USDTRACE_PREFIX_MAX", Napi::Number::New(env, USDTRACE_PREFIX_MAX));
  constants.Set("CALL_ENTRY", Napi::Number::New(env, CALL_ENTRY));
  constants.Set("CALL_RETURN", Napi::Number::New(env, CALL_RETURN));
  constants.Set("CALL_NAMES", Napi::Number::New(env, CALL_NAMES));
  constants.Set("CALL_FORGET", Napi::Number::New(env, CALL_FORGET));
  constants.Set("CALL_HAS_DURATION", Napi::Number::New(env, CALL_HAS_DURATION));
  constants.Set("CALL_FILE_TRUNCATED", Napi::Number::New(env, CALL_FILE_TRUNCATED));
  constants.Set("CALL_FUNC_TRUNCATED", Napi::Number::New(env, CALL_FUNC_TRUNCATED));
  constants.Set("SYSCALL_WANTED", Napi::Number::New(env, SYSCALL_WANTED));
  constants.Set("SYSCALL_NEVER_RETURNS", Napi::Number::New(env, SYSCALL_NEVER_RETURNS));
  constants.Set("SYSCALL_PATH_ARG_SHIFT", Napi::Number::New(env, SYSCALL_PATH_ARG_SHIFT));
  constants.Set("SYSCALL_PATH_ARG_MASK", Napi::Number::New(env, SYSCALL_PATH_ARG_MASK));
  constants.Set("USDTRACE_SYSCALL_TABLE_SIZE", Napi::Number::New(env, USDTRACE_SYSCALL_TABLE_SIZE));
  constants.Set("SYSCALL_RETURNED", Napi::Number::New(env, SYSCALL_RETURNED));
  constants.Set("SYSCALL_DETAIL_TRUNCATED", Napi::Number::New(env, SYSCALL_DETAIL_TRUNCATED));
  constants.Set("USDTRACE_HISTOGRAM_BUCKETS", Napi::Number::New(env, USDTRACE_HISTOGRAM_BUCKETS));
  constants.Set("USDT_MAX_ARGS", Napi::Number::New(env, USDT_MAX_ARGS));
  constants.Set("USDT_COOKIE_COUNT_MASK", Napi::Number::New(env, USDT_COOKIE_COUNT_MASK));
  constants.Set("USDT_COOKIE_STR_SHIFT", Napi::Number::New(env, USDT_COOKIE_STR_SHIFT));
  constants.Set("USDT_STR_TRUNCATED", Napi::Number::New(env, USDT_STR_TRUNCATED));
  constants.Set("LIBRARY_CALL_ARGS", Napi::Number::New(env, LIBRARY_CALL_ARGS));
  constants.Set("IMPORT_FOUND", Napi::Number::New(env, IMPORT_FOUND));
  constants.Set("IMPORT_HAS_START", Napi::Number::New(env, IMPORT_HAS_START));
  constants.Set("IMPORT_NAME_TRUNCATED", Napi::Number::New(env, IMPORT_NAME_TRUNCATED));
  constants.Set("AUDIT_NAME_MAX", Napi::Number::New(env, AUDIT_NAME_MAX));
  constants.Set("AUDIT_VALUE_MAX", Napi::Number::New(env, AUDIT_VALUE_MAX));
  constants.Set("AUDIT_ARGS_MAX", Napi::Number::New(env, AUDIT_ARGS_MAX));
  constants.Set("AUDIT_ITEMS_MAX", Napi::Number::New(env, AUDIT_ITEMS_MAX));
  constants.Set("AUDIT_NESTED_ITEMS_MAX", Napi::Number::New(env, AUDIT_NESTED_ITEMS_MAX));
  constants.Set("AUDIT_NAME_TRUNCATED", Napi::Number::New(env, AUDIT_NAME_TRUNCATED));
  constants.Set("AUDIT_ARGS_DECODED", Napi::Number::New(env, AUDIT_ARGS_DECODED));
  constants.Set("AUDIT_ARGS_TRUNCATED", Napi::Number::New(env, AUDIT_ARGS_TRUNCATED));
  constants.Set("AUDIT_VALUE_STR", Napi::Number::New(env, AUDIT_VALUE_STR));
  constants.Set("AUDIT_VALUE_BYTES", Napi::Number::New(env, AUDIT_VALUE_BYTES));
  constants.Set("AUDIT_VALUE_INT", Napi::Number::New(env, AUDIT_VALUE_INT));
  constants.Set("AUDIT_VALUE_BOOL", Napi::Number::New(env, AUDIT_VALUE_BOOL));
  constants.Set("AUDIT_VALUE_TUPLE", Napi::Number::New(env, AUDIT_VALUE_TUPLE));
  constants.Set("AUDIT_VALUE_LIST", Napi::Number::New(env, AUDIT_VALUE_LIST));
  constants.Set("AUDIT_VALUE_OBJECT", Napi::Number::New(env, AUDIT_VALUE_OBJECT));
  constants.Set("AUDIT_VALUE_CUT", Napi::Number::New(env, AUDIT_VALUE_CUT));
  constants.Set("USDT_SPECS_MAX", Napi::Number::New(env, USDT_SPECS_MAX));
  constants.Set("USDT_ARG_CONST", Napi::Number::New(env, USDT_ARG_CONST));
  constants.Set("USDT_ARG_REG", Napi::Number::New(env, USDT_ARG_REG));
  constants.Set("USDT_ARG_REG_DEREF", Napi::Number::New(env, USDT_ARG_REG_DEREF));
  layouts.Set("constants", constants);
  return layouts;
}
