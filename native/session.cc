// The one generic path every probe takes: open an embedded BPF object, attach its programs to
// USDT probes or uprobes, then drain its `events` ring buffer in batches on the event loop.
//
// Draining: BPF submits without waking the reader until a threshold fills, and the ring is
// watched edge-triggered, so only those wakeups start a drain (level-triggered, a ring that
// holds any record reads as ready, and a busy target would keep the loop draining a few records
// at a time); a short repeating timer collects the rest. The records are copied (or laid out in
// columns) into buffers JS lends, on the session's fill thread (native/fill_thread.h), one
// buffer after another while the ring holds more; each filled buffer is handed to JS on the loop
// in one call, which lends another in its place (JS decodes lazily, so it keeps each until it
// is read). JS is woken only after that, so it reads a delivery while the next is filled.
#include "session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "bytes.h"
#include "fill_thread.h"
#include "globals.h"
#include "libbpf_log.h"
#include "objects.h"
#include "ring.h"
#include "uprobe_multi.h"

// What a session holds in the kernel. Detaching a uprobe waits for an RCU grace period (some
// 100 ms per perf-event uprobe on 6.x kernels, one for a whole uprobe multi link), so links are
// destroyed off the event loop, several at once.
struct KernelObjects {
  std::vector<struct bpf_link*> links;
  std::vector<int> linkFds;
  RingReader* ring = nullptr;
  struct bpf_object* object = nullptr;

  static void Destroy(KernelObjects* kernel) {
    constexpr size_t kMaxThreads = 16;
    size_t count = kernel->links.size() + kernel->linkFds.size();
    std::atomic<size_t> next{0};
    auto destroyLinks = [&] {
      for (size_t i = next++; i < count; i = next++) {
        if (i < kernel->links.size()) bpf_link__destroy(kernel->links[i]);
        else close(kernel->linkFds[i - kernel->links.size()]);
      }
    };
    std::vector<std::thread> threads;
    for (size_t i = 1; i < std::min(count, kMaxThreads); i++) threads.emplace_back(destroyLinks);
    destroyLinks();
    for (std::thread& thread : threads) thread.join();
    delete kernel->ring;
    if (kernel->object) bpf_object__close(kernel->object);
    delete kernel;
  }
};

namespace {

// [u32 record length][record bytes], repeated: the batch format the JS decoder walks.
constexpr size_t kLengthPrefix = sizeof(uint32_t);

Napi::Value ThrowErrno(Napi::Env env, int err, const std::string& what) {
  std::string message = what + ": " + strerror(err);
  std::string log = TakeLibbpfLog();
  if (!log.empty()) message += "\n" + log;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  const char* name = strerrorname_np(err);
  error.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

// An exception pending after a call made from the loop goes where Node sends uncaught ones.
void ReportUncaught(Napi::Env env) {
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

Napi::Value ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

uint64_t ToU64(Napi::Value value) {
  if (value.IsBigInt()) {
    bool lossless;
    return value.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return static_cast<uint64_t>(value.As<Napi::Number>().Int64Value());
}

class DetachWorker : public Napi::AsyncWorker {
 public:
  DetachWorker(Napi::Env env, KernelObjects* kernel)
      : Napi::AsyncWorker(env, "usdtrace:detach"), kernel_(kernel), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { KernelObjects::Destroy(kernel_); }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

 private:
  KernelObjects* kernel_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

// The libuv handles outlive the Session by a loop turn (uv_close is asynchronous), so they live
// apart and find their owner through a pointer that Release clears.
struct Session::Watchers {
  // A traced process: its pidfd turns readable once the whole process has exited, after which
  // no record of it can follow.
  struct Target {
    uv_poll_t poll;
    int pidfd;
    bool exited;
  };

  Session* owner;
  // An epoll of its own holding the ring's fd edge-triggered: it turns readable on the BPF
  // side's wakeups only, and each is taken off it before the drain.
  int ringWakeups = -1;
  uv_poll_t ring;
  uv_timer_t flush;
  // The fill thread's word that a fill is done (sessions with a ring only).
  uv_async_t filled;
  std::vector<Target*> targets;
  size_t running = 0;
  int openHandles = 0;

  static Session* OwnerOf(void* handle) {
    return static_cast<Watchers*>(static_cast<uv_handle_t*>(handle)->data)->owner;
  }
  static void OnRingReadable(uv_poll_t* handle, int, int) {
    Watchers* watchers = static_cast<Watchers*>(handle->data);
    struct epoll_event wakeup;
    while (epoll_wait(watchers->ringWakeups, &wakeup, 1, 0) > 0) {
    }
    if (watchers->owner) watchers->owner->Drain();
  }
  static void OnFlushTick(uv_timer_t* handle) {
    if (Session* session = OwnerOf(handle)) session->Drain();
  }
  static void OnFilled(uv_async_t* handle) {
    if (Session* session = OwnerOf(handle)) session->OnFilled();
  }
  static void OnTargetExit(uv_poll_t* handle, int, int) {
    Watchers* watchers = static_cast<Watchers*>(handle->data);
    for (Target* target : watchers->targets) {
      if (&target->poll != handle || target->exited) continue;
      target->exited = true;
      uv_poll_stop(handle);
      watchers->running--;
    }
    if (watchers->running == 0 && watchers->owner) watchers->owner->OnTargetsExited();
  }
  static void OnClosed(uv_handle_t* handle) {
    Watchers* watchers = static_cast<Watchers*>(handle->data);
    if (--watchers->openHandles > 0) return;
    for (Target* target : watchers->targets) {
      close(target->pidfd);
      delete target;
    }
    if (watchers->ringWakeups >= 0) close(watchers->ringWakeups);
    delete watchers;
  }
};

Napi::Function Session::Define(Napi::Env env) {
  return DefineClass(env, "Session",
                     {
                         InstanceMethod<&Session::AttachUprobes>("attachUprobes"),
                         InstanceMethod<&Session::AttachRawTracepoint>("attachRawTracepoint"),
                         InstanceMethod<&Session::AttachTracing>("attachTracing"),
                         InstanceMethod<&Session::AttachPerfEvents>("attachPerfEvents"),
                         InstanceMethod<&Session::RunIterator>("runIterator"),
                         InstanceMethod<&Session::DumpMap>("dumpMap"),
                         InstanceMethod<&Session::UpdateMap>("updateMap"),
                         InstanceMethod<&Session::Start>("start"),
                         InstanceMethod<&Session::LendBuffer>("lend"),
                         InstanceMethod<&Session::UseColumns>("useColumns"),
                         InstanceMethod<&Session::DecodeColumns>("decodeColumns"),
                         InstanceMethod<&Session::Counters>("counters"),
                         InstanceMethod<&Session::Close>("close"),
                         InstanceAccessor<&Session::Closed>("closed"),
                     });
}

// new Session({ object, maxEntries?: { map: n }, constants?: { name: value }, programs?: [name] }):
// opens and loads (only `programs`, when given), attaches nothing.
Session::Session(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Session>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    ThrowType(env, "Session options must be an object");
    return;
  }
  Napi::Object options = info[0].As<Napi::Object>();
  std::string name = options.Get("object").ToString();
  EmbeddedObject embedded;
  if (!FindEmbeddedObject(name, &embedded)) {
    ThrowType(env, "no embedded BPF object named " + name);
    return;
  }

  LIBBPF_OPTS(bpf_object_open_opts, openOptions, .object_name = name.c_str());
  object_ = bpf_object__open_mem(embedded.bytes, embedded.size, &openOptions);
  if (!object_) {
    ThrowErrno(env, errno, "opening BPF object " + name);
    return;
  }

  Napi::Value maps = options.Get("maxEntries");
  if (maps.IsObject()) {
    Napi::Object sizes = maps.As<Napi::Object>();
    Napi::Array names = sizes.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string mapName = names.Get(i).ToString();
      struct bpf_map* map = bpf_object__find_map_by_name(object_, mapName.c_str());
      if (!map) {
        ThrowType(env, "BPF object " + name + " has no map " + mapName);
        return;
      }
      int err = bpf_map__set_max_entries(map, sizes.Get(mapName).As<Napi::Number>().Uint32Value());
      if (err) {
        ThrowErrno(env, -err, "sizing map " + mapName);
        return;
      }
    }
  }

  Napi::Value constants = options.Get("constants");
  if (constants.IsObject() && !SetConstants(env, name, constants.As<Napi::Object>())) return;

  // Only the programs named are loaded, when a list is given: verifying one that will not be
  // attached would cost the trace's start for nothing.
  Napi::Value programs = options.Get("programs");
  if (programs.IsArray()) {
    Napi::Array wanted = programs.As<Napi::Array>();
    struct bpf_program* program;
    bpf_object__for_each_program(program, object_) {
      bool load = false;
      for (uint32_t i = 0; i < wanted.Length() && !load; i++)
        load = wanted.Get(i).ToString().Utf8Value() == bpf_program__name(program);
      bpf_program__set_autoload(program, load);
    }
  }

  // A program loaded for uprobe multi links attaches through nothing else, so either all of the
  // object's uprobe programs are, or none.
  multiUprobes_ = UprobeMultiSupported();
  struct bpf_program* program;
  bpf_object__for_each_program(program, object_) {
    if (multiUprobes_ && bpf_program__type(program) == BPF_PROG_TYPE_KPROBE)
      bpf_program__set_expected_attach_type(program, static_cast<enum bpf_attach_type>(kUprobeMultiAttachType));
  }

  // The verifier gives up with EAGAIN whenever a signal is pending, and a sampling profiler
  // (node --cpu-prof) signals this thread more often than a program takes to verify: signals
  // wait until the load is done instead.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  int err = bpf_object__load(object_);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (err) ThrowErrno(env, -err, "loading BPF object " + name);
}

Session::~Session() {
  // Collected without close(): nobody waits, so the detach runs on a thread of its own.
  if (KernelObjects* kernel = Release()) std::thread(KernelObjects::Destroy, kernel).detach();
}

// Writes { name: value } into the object's .rodata before load; false after throwing.
bool Session::SetConstants(Napi::Env env, const std::string& objectName, Napi::Object values) {
  struct bpf_map* rodata = bpf_object__find_map_by_name(object_, ".rodata");
  size_t size = 0;
  const void* initial = rodata ? bpf_map__initial_value(rodata, &size) : nullptr;
  std::vector<uint8_t> data(static_cast<const uint8_t*>(initial),
                            static_cast<const uint8_t*>(initial) + (initial ? size : 0));
  Napi::Array names = values.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string constant = names.Get(i).ToString();
    bool found = false;
    Napi::Value value = values.Get(constant);
    ForEachGlobal(object_, ".rodata", [&](const char* var, uint32_t offset, uint32_t width) {
      if (constant != var || offset + width > data.size()) return;
      if (value.IsTypedArray()) {
        // A byte array (e.g. a name to filter on), zero-padded to the variable's size.
        Napi::Uint8Array bytes = value.As<Napi::Uint8Array>();
        memset(data.data() + offset, 0, width);
        memcpy(data.data() + offset, bytes.Data(), std::min<size_t>(bytes.ByteLength(), width));
      } else {
        WriteUnsigned(data.data() + offset, width, ToU64(value));
      }
      found = true;
    });
    if (!found) {
      ThrowType(env, "BPF object " + objectName + " has no constant " + constant);
      return false;
    }
  }
  int err = rodata ? bpf_map__set_initial_value(rodata, data.data(), data.size()) : 0;
  if (err) ThrowErrno(env, -err, "setting the constants of " + objectName);
  return err == 0;
}

struct bpf_program* Session::ProgramNamed(Napi::Env env, const std::string& name) {
  struct bpf_program* program =
      object_ ? bpf_object__find_program_by_name(object_, name.c_str()) : nullptr;
  if (!program) ThrowType(env, "no BPF program named " + name);
  else if (!bpf_program__autoload(program)) ThrowType(env, "BPF program " + name + " was not loaded: name it in `programs`");
  return program && bpf_program__autoload(program) ? program : nullptr;
}

// attachUprobes(program, pid, path, sites: [{ fileOffset, refCtrOffset, cookie }], retprobe):
// every site in one uprobe_multi link where the kernel has them, else one perf uprobe per site.
// The program reads its site's cookie with bpf_get_attach_cookie(), e.g. a usdt_specs slot.
Napi::Value Session::AttachUprobes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* program = ProgramNamed(env, info[0].ToString());
  if (!program) return env.Undefined();
  int pid = info[1].As<Napi::Number>().Int32Value();
  std::string path = info[2].ToString();
  if (!info[3].IsArray()) return ThrowType(env, "attachUprobes: sites must be an array");
  Napi::Array given = info[3].As<Napi::Array>();
  bool retprobe = info[4].ToBoolean().Value();
  std::vector<UprobeSite> sites(given.Length());
  for (uint32_t i = 0; i < given.Length(); i++) {
    Napi::Object site = given.Get(i).As<Napi::Object>();
    sites[i] = {ToU64(site.Get("fileOffset")), ToU64(site.Get("refCtrOffset")), ToU64(site.Get("cookie"))};
  }
  if (sites.empty()) return ThrowType(env, "attachUprobes: no sites");
  if (multiUprobes_) {
    int fd = AttachUprobeMulti(bpf_program__fd(program), pid, path, sites, retprobe);
    if (fd < 0) return ThrowErrno(env, -fd, "attaching uprobes to " + path);
    linkFds_.push_back(fd);
    return env.Undefined();
  }
  for (const UprobeSite& site : sites) {
    LIBBPF_OPTS(bpf_uprobe_opts, options, .ref_ctr_offset = static_cast<size_t>(site.refCtrOffset),
                .bpf_cookie = site.cookie, .retprobe = retprobe);
    struct bpf_link* link =
        bpf_program__attach_uprobe_opts(program, pid, path.c_str(), site.fileOffset, &options);
    if (!link) return ThrowErrno(env, errno, "attaching a uprobe to " + path);
    links_.push_back(link);
  }
  return env.Undefined();
}

// attachRawTracepoint(program, tracepoint): e.g. sys_enter, sys_exit; no tracefs involved.
Napi::Value Session::AttachRawTracepoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* program = ProgramNamed(env, info[0].ToString());
  if (!program) return env.Undefined();
  std::string tracepoint = info[1].ToString();
  struct bpf_link* link = bpf_program__attach_raw_tracepoint(program, tracepoint.c_str());
  if (!link) return ThrowErrno(env, errno, "attaching to raw tracepoint " + tracepoint);
  links_.push_back(link);
  return env.Undefined();
}

// attachTracing(program): a BTF tracepoint (tp_btf/...), attached where its section names.
Napi::Value Session::AttachTracing(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* program = ProgramNamed(env, info[0].ToString());
  if (!program) return env.Undefined();
  struct bpf_link* link = bpf_program__attach_trace(program);
  if (!link) return ThrowErrno(env, errno, "attaching " + info[0].ToString().Utf8Value());
  links_.push_back(link);
  return env.Undefined();
}

// attachPerfEvents(program, frequency): a CPU clock event on every online CPU, sampling at
// `frequency` Hz, each running the program in whatever task it interrupts.
Napi::Value Session::AttachPerfEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* program = ProgramNamed(env, info[0].ToString());
  if (!program) return env.Undefined();
  uint64_t frequency = ToU64(info[1]);
  int cpus = libbpf_num_possible_cpus();
  if (cpus < 0) return ThrowErrno(env, -cpus, "counting CPUs");
  int attached = 0;
  for (int cpu = 0; cpu < cpus; cpu++) {
    struct perf_event_attr attr = {};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.freq = 1;
    attr.sample_freq = frequency;
    int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
    if (fd < 0) {
      if (errno == ENODEV) continue;  // a possible CPU that is offline
      return ThrowErrno(env, errno, "opening a CPU clock event on CPU " + std::to_string(cpu));
    }
    // The link owns the event from here: destroying it closes the fd.
    struct bpf_link* link = bpf_program__attach_perf_event(program, fd);
    if (!link) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, err, "attaching to the CPU clock event of CPU " + std::to_string(cpu));
    }
    links_.push_back(link);
    attached++;
  }
  if (attached == 0) return ThrowErrno(env, ENODEV, "no CPU is online");
  return env.Undefined();
}

namespace {

// Runs a BPF iterator to its end off the event loop: its programs may sleep (reading another
// task's memory faults its pages in).
class IteratorWorker : public Napi::AsyncWorker {
 public:
  IteratorWorker(Napi::Env env, struct bpf_program* program, std::string name)
      : Napi::AsyncWorker(env, "usdtrace:iterate"), program_(program), name_(std::move(name)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    struct bpf_link* link = bpf_program__attach_iter(program_, nullptr);
    if (!link) return Fail(errno, "attaching iterator " + name_);
    int fd = bpf_iter_create(bpf_link__fd(link));
    if (fd < 0) {
      Fail(errno, "starting iterator " + name_);
    } else {
      char chunk[1 << 16];
      ssize_t n;
      while ((n = read(fd, chunk, sizeof chunk)) > 0) output_.insert(output_.end(), chunk, chunk + n);
      if (n < 0) Fail(errno, "reading iterator " + name_);
      close(fd);
    }
    bpf_link__destroy(link);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      std::string message = what_ + ": " + strerror(err_);
      if (!log_.empty()) message += "\n" + log_;
      Napi::Error error = Napi::Error::New(env, message);
      error.Set("errno", Napi::Number::New(env, err_));
      const char* name = strerrorname_np(err_);
      error.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
      deferred_.Reject(error.Value());
      return;
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, output_.data(), output_.size()));
  }

 private:
  void Fail(int err, std::string what) {
    if (err_) return;
    err_ = err;
    what_ = std::move(what);
    log_ = TakeLibbpfLog();
  }

  struct bpf_program* program_;
  std::string name_;
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> output_;
  int err_ = 0;
  std::string what_;
  std::string log_;
};

}  // namespace

// runIterator(program): resolves to everything the iterator wrote, as [u32 length][record]...
Napi::Value Session::RunIterator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_program* program = ProgramNamed(env, info[0].ToString());
  if (!program) return env.Undefined();
  IteratorWorker* worker = new IteratorWorker(env, program, info[0].ToString());
  Napi::Promise output = worker->Promise();
  worker->Queue();
  return output;
}

struct bpf_map* Session::MapNamed(Napi::Env env, const std::string& name) {
  struct bpf_map* map = object_ ? bpf_object__find_map_by_name(object_, name.c_str()) : nullptr;
  if (!map) ThrowType(env, "no BPF map named " + name);
  return map;
}

// dumpMap(name, remove): every entry as { count, keySize, valueSize, keys, values }, keys and
// values packed back to back; a per-CPU map's value holds one 8-byte-aligned slot per CPU.
// With `remove`, each entry is taken out as it is read, so counting restarts from zero.
Napi::Value Session::DumpMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0].ToString());
  if (!map) return env.Undefined();
  bool remove = info[1].ToBoolean().Value();
  int fd = bpf_map__fd(map);
  size_t keySize = bpf_map__key_size(map);
  size_t valueSize = bpf_map__value_size(map);
  switch (bpf_map__type(map)) {
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
      valueSize = ((valueSize + 7) & ~size_t{7}) * libbpf_num_possible_cpus();
      break;
    default:
      break;
  }
  std::vector<uint8_t> keys;
  std::vector<uint8_t> values;
  std::vector<uint8_t> key(keySize);
  std::vector<uint8_t> value(valueSize);
  // Keys first: deleting while walking with get_next_key would restart the walk.
  std::vector<uint8_t> walk;
  for (void* previous = nullptr; bpf_map_get_next_key(fd, previous, key.data()) == 0;) {
    walk.insert(walk.end(), key.begin(), key.end());
    previous = walk.data() + walk.size() - keySize;
  }
  for (size_t offset = 0; offset < walk.size(); offset += keySize) {
    const uint8_t* at = walk.data() + offset;
    int err = remove ? bpf_map_lookup_and_delete_elem(fd, at, value.data())
                     : bpf_map_lookup_elem(fd, at, value.data());
    if (err && remove && (errno == EINVAL || errno == ENOTSUP)) {
      err = bpf_map_lookup_elem(fd, at, value.data());
      if (!err) bpf_map_delete_elem(fd, at);
    }
    if (err) continue;  // gone since the walk
    keys.insert(keys.end(), at, at + keySize);
    values.insert(values.end(), value.begin(), value.end());
  }
  Napi::Object dump = Napi::Object::New(env);
  dump.Set("count", Napi::Number::New(env, static_cast<double>(keys.size() / (keySize ? keySize : 1))));
  dump.Set("keySize", Napi::Number::New(env, static_cast<double>(keySize)));
  dump.Set("valueSize", Napi::Number::New(env, static_cast<double>(valueSize)));
  dump.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  dump.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
  return dump;
}

// updateMap(name, key: Uint8Array, value: Uint8Array): e.g. the filters BPF consults.
Napi::Value Session::UpdateMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0].ToString());
  if (!map) return env.Undefined();
  Napi::Uint8Array key = info[1].As<Napi::Uint8Array>();
  Napi::Uint8Array value = info[2].As<Napi::Uint8Array>();
  if (key.ByteLength() != bpf_map__key_size(map) || value.ByteLength() != bpf_map__value_size(map))
    return ThrowType(env, "key or value size does not match map " + info[0].ToString().Utf8Value());
  if (bpf_map_update_elem(bpf_map__fd(map), key.Data(), value.Data(), BPF_ANY))
    return ThrowErrno(env, errno, "updating map " + info[0].ToString().Utf8Value());
  return env.Undefined();
}

// start({ batches: [Uint8Array], onBatch(...), onDelivered(), onEnd(), exitPids, flushIntervalMs }):
// the stream ends once every process in exitPids has exited (never, when there is none). The
// buffers in `batches` are filled in turn; onBatch(buffer, ...counts) takes each filled one and
// returns a buffer to lend in its place, or none; with none lent, the drain pauses until
// lend(buffer). One that came back empty is lent again, behind the others.
// onDelivered follows the onBatch calls of a turn, once the next fills are under way.
Napi::Value Session::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_ || closed_) return ThrowType(env, "session already started or closed");
  Napi::Object options = info[0].As<Napi::Object>();
  onBatch_ = Napi::Persistent(options.Get("onBatch").As<Napi::Function>());
  onDelivered_ = Napi::Persistent(options.Get("onDelivered").As<Napi::Function>());
  onEnd_ = Napi::Persistent(options.Get("onEnd").As<Napi::Function>());
  if (options.Get("flushIntervalMs").IsNumber())
    flushIntervalMs_ = options.Get("flushIntervalMs").As<Napi::Number>().Uint32Value();
  asyncContext_ = new Napi::AsyncContext(env, "usdtrace:drain");

  // An object without an `events` ring (a summary read from its maps) only watches its targets.
  struct bpf_map* events = bpf_object__find_map_by_name(object_, "events");
  int ringWakeups = -1;
  if (events) {
    ring_ = new RingReader();
    if (int err = ring_->Open(bpf_map__fd(events)); err < 0) {
      delete ring_;
      ring_ = nullptr;
      return ThrowErrno(env, -err, "mapping the ring buffer");
    }
    ringWakeups = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event wakeups = {};
    wakeups.events = EPOLLIN | EPOLLET;
    if (ringWakeups < 0 || epoll_ctl(ringWakeups, EPOLL_CTL_ADD, bpf_map__fd(events), &wakeups) < 0) {
      int err = errno;
      if (ringWakeups >= 0) close(ringWakeups);
      return ThrowErrno(env, err, "watching the ring buffer");
    }
  }

  uv_loop_t* loop;
  napi_get_uv_event_loop(env, &loop);
  watchers_ = new Watchers();
  watchers_->owner = this;
  uv_timer_init(loop, &watchers_->flush);
  watchers_->flush.data = watchers_;
  watchers_->openHandles = 1;
  if (ring_) {
    watchers_->ringWakeups = ringWakeups;
    uv_poll_init(loop, &watchers_->ring, ringWakeups);
    watchers_->ring.data = watchers_;
    uv_async_init(loop, &watchers_->filled, Watchers::OnFilled);
    watchers_->filled.data = watchers_;
    // The flush timer keeps the loop alive while the drain runs; a paused or ended trace does not.
    uv_unref(reinterpret_cast<uv_handle_t*>(&watchers_->filled));
    watchers_->openHandles += 2;
    filler_ = std::make_unique<FillThread>(FillOnThread, this, &watchers_->filled);
  }

  Napi::Array exitPids = options.Get("exitPids").As<Napi::Array>();
  for (uint32_t i = 0; i < exitPids.Length(); i++) {
    int pid = exitPids.Get(i).As<Napi::Number>().Int32Value();
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) continue;  // already gone
    Watchers::Target* target = new Watchers::Target{{}, pidfd, false};
    uv_poll_init(loop, &target->poll, pidfd);
    target->poll.data = watchers_;
    watchers_->targets.push_back(target);
    watchers_->openHandles++;
    watchers_->running++;
  }
  targetsExited_ = exitPids.Length() > 0 && watchers_->running == 0;
  if (targetsExited_ && filler_) filler_->TargetsExited();

  started_ = true;
  Napi::Array batches = options.Get("batches").As<Napi::Array>();
  for (uint32_t i = 0; i < batches.Length(); i++)
    if (!Lend(batches.Get(i))) return env.Undefined();
  paused_ = filler_ && lent_.empty();
  if (!paused_) Watch();
  return env.Undefined();
}

// lend(buffer): one more buffer to fill, after those lent before; the drain resumes if it had none.
Napi::Value Session::LendBuffer(const Napi::CallbackInfo& info) {
  if (!started_ || closed_ || ended_ || !Lend(info[0])) return info.Env().Undefined();
  if (paused_) {
    paused_ = false;
    Watch();
  }
  return info.Env().Undefined();
}

// useColumns(layout): every buffer lent from now on (by onBatch or lend) is filled with the
// columns `layout` places (src/streams/batch.ts), and onBatch(rows, sideBytes, sideRecords)
// delivers it. A buffer held already, maybe being filled, still takes records as they are.
Napi::Value Session::UseColumns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Once only: the fill thread may be reading the layout at any time.
  if (columns_) return ThrowType(env, "useColumns called twice");
  auto columns = std::make_unique<ColumnLayout>();
  if (!columns->Parse(env, info[0].As<Napi::Object>())) return env.Undefined();
  columns_ = std::move(columns);
  return env.Undefined();
}

// decodeColumns(records, from, end, buffer, filled): fills the records ([u32 length][record],
// from byte `from` to `end`) a drain delivered before useColumns into `buffer` by the same
// layout, after the rows and side records `filled` ([rows, sideBytes, sideRecords], updated)
// says it holds; stops at the first record that does not fit. Returns the offset it stopped at.
Napi::Value Session::DecodeColumns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!columns_) return ThrowType(env, "decodeColumns before useColumns");
  Napi::Uint8Array records = info[0].As<Napi::Uint8Array>();
  size_t from = info[1].As<Napi::Number>().Uint32Value();
  size_t end = info[2].As<Napi::Number>().Uint32Value();
  Napi::Uint8Array target = info[3].As<Napi::Uint8Array>();
  Napi::Uint32Array filled = info[4].As<Napi::Uint32Array>();
  if (from > end || end > records.ByteLength() || target.ByteLength() < columns_->bufferBytes() || filled.ElementLength() != 3 ||
      filled[0] > columns_->capacity())
    return ThrowType(env, "decodeColumns: bad arguments");
  std::vector<RingRecord> views;
  for (size_t at = from; at < end;) {
    uint32_t length;
    if (at + kLengthPrefix > end) return ThrowType(env, "decodeColumns: records end early");
    memcpy(&length, records.Data() + at, kLengthPrefix);
    at += kLengthPrefix;
    if (at + length > end) return ThrowType(env, "decodeColumns: records end early");
    views.push_back({records.Data() + at, length});
    at += length;
  }
  ColumnLayout::Fill fill;
  fill.buffer = target.Data();
  fill.rows = filled[0];
  fill.sideUsed = filled[1];
  fill.sideCount = filled[2];
  uint64_t undecodable = 0;
  size_t taken = columns_->Add(fill, views.data(), views.size(), undecodable);
  droppedUndecodable_ += undecodable;
  filled[0] = fill.rows;
  filled[1] = fill.sideUsed;
  filled[2] = fill.sideCount;
  size_t stopped = taken < views.size() ? static_cast<size_t>(views[taken].data - records.Data()) - kLengthPrefix : end;
  return Napi::Number::New(env, static_cast<double>(stopped));
}

// Lends `buffer` to the fill thread; false after throwing: a buffer smaller than the column
// layout would be written past its end. A session without a ring fills nothing and keeps none.
bool Session::Lend(Napi::Value buffer) {
  if (!buffer.IsTypedArray()) {
    ThrowType(Env(), "a batch must be a Uint8Array");
    return false;
  }
  Napi::Uint8Array batch = buffer.As<Napi::Uint8Array>();
  if (columns_ && batch.ByteLength() < columns_->bufferBytes()) {
    ThrowType(Env(), "a batch buffer is smaller than its column layout");
    return false;
  }
  if (!filler_) return true;
  lent_.push_back(Napi::Persistent(batch.As<Napi::Object>()));
  filler_->Lend({batch.Data(), batch.ByteLength(), columns_ != nullptr});
  return true;
}

// Every global of the object's .bss (the BPF side's counters), by name, as BigInts, and the
// drain's own count of records too large to deliver.
Napi::Value Session::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object counters = Napi::Object::New(env);
  counters.Set("dropped_oversized", Napi::BigInt::New(env, droppedOversized_.load(std::memory_order_relaxed)));
  counters.Set("dropped_undecodable", Napi::BigInt::New(env, droppedUndecodable_.load(std::memory_order_relaxed)));
  struct bpf_map* bss = object_ ? bpf_object__find_map_by_name(object_, ".bss") : nullptr;
  if (!bss) return counters;
  std::vector<uint8_t> value(bpf_map__value_size(bss));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(bss), &zero, value.data()))
    return ThrowErrno(env, errno, "reading BPF counters");
  ForEachGlobal(object_, ".bss", [&](const char* name, uint32_t offset, uint32_t size) {
    if (offset + size <= value.size())
      counters.Set(name, Napi::BigInt::New(env, ReadUnsigned(value.data() + offset, size)));
  });
  return counters;
}

// closed: true once close() was called; its maps and programs are gone from then on.
Napi::Value Session::Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }

// close(): stops draining at once; resolves when every probe is detached.
Napi::Value Session::Close(const Napi::CallbackInfo& info) {
  KernelObjects* kernel = Release();
  if (!kernel) {
    Napi::Promise::Deferred done = Napi::Promise::Deferred::New(info.Env());
    done.Resolve(info.Env().Undefined());
    return done.Promise();
  }
  DetachWorker* worker = new DetachWorker(info.Env(), kernel);
  Napi::Promise detached = worker->Promise();
  worker->Queue();
  return detached;
}

void Session::Watch() {
  if (ring_) uv_poll_start(&watchers_->ring, UV_READABLE, Watchers::OnRingReadable);
  for (Watchers::Target* target : watchers_->targets)
    if (!target->exited) uv_poll_start(&target->poll, UV_READABLE, Watchers::OnTargetExit);
  // The first tick comes at once, so records that piled up while paused arrive promptly; without
  // a ring, that one tick is all (it ends a session whose targets were gone before it started).
  uv_timer_start(&watchers_->flush, Watchers::OnFlushTick, 0, ring_ ? flushIntervalMs_ : 0);
}

void Session::Unwatch() {
  if (ring_) uv_poll_stop(&watchers_->ring);
  for (Watchers::Target* target : watchers_->targets) uv_poll_stop(&target->poll);
  uv_timer_stop(&watchers_->flush);
}

void Session::OnTargetsExited() {
  targetsExited_ = true;
  if (filler_) filler_->TargetsExited();
  Drain();
}

size_t Session::OnRecords(void* ctx, const RingRecord* records, size_t count) {
  return static_cast<Session*>(ctx)->TakeRecords(records, count);
}

// Takes records into the buffer being filled until one does not fit: that one stays in the
// ring and opens the next buffer.
size_t Session::TakeRecords(const RingRecord* records, size_t count) {
  if (!filling_.columns) return CopyRecords(records, count);
  uint64_t undecodable = 0;
  size_t taken = columns_->Add(fill_, records, count, undecodable);
  if (undecodable) droppedUndecodable_ += undecodable;
  return taken;
}

size_t Session::CopyRecords(const RingRecord* records, size_t count) {
  for (size_t i = 0; i < count; i++) {
    uint32_t size = records[i].size;
    if (batchUsed_ + kLengthPrefix + size > filling_.capacity) {
      if (batchUsed_ > 0) return i;
      // Larger than a whole batch: it can never be delivered, so it is counted, not kept.
      droppedOversized_++;
      continue;
    }
    memcpy(filling_.data + batchUsed_, &size, kLengthPrefix);
    memcpy(filling_.data + batchUsed_ + kLengthPrefix, records[i].data, size);
    batchUsed_ += kLengthPrefix + size;
    batchCount_++;
  }
  return count;
}

Filled Session::FillOnThread(void* ctx, const FillBuffer& buffer) { return static_cast<Session*>(ctx)->Fill(buffer); }

// A wakeup, a tick or the targets' exit: the fill thread looks at the ring again.
void Session::Drain() {
  if (!started_ || closed_ || paused_ || ended_) return;
  if (filler_) filler_->Request();
  // Without a ring there is nothing to fill: the targets' exit is the end.
  else if (targetsExited_) End();
}

// One fill, on the fill thread: the ring's records, up to a full buffer. Touches nothing but the
// fill thread's own state and the counters.
Filled Session::Fill(const FillBuffer& buffer) {
  filling_ = buffer;
  batchUsed_ = 0;
  batchCount_ = 0;
  fill_ = ColumnLayout::Fill();
  fill_.buffer = buffer.data;
  Filled filled;
  filled.columns = buffer.columns;
  filled.full = ring_->Consume(OnRecords, this);
  filled.bytes = static_cast<uint32_t>(batchUsed_);
  filled.records = batchCount_;
  filled.rows = fill_.rows;
  filled.sideBytes = fill_.sideUsed;
  filled.sideRecords = fill_.sideCount;
  return filled;
}

// On the loop: hands every finished fill to JS in order, each buffer with one to lend in its
// place; then wakes the reader, whose work overlaps the fills under way; then ends the stream
// if a fill begun after the targets exited emptied the ring.
void Session::OnFilled() {
  if (closed_ || ended_) return;
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  bool delivered = false;
  bool last = false;
  Filled filled;
  while (!last && filler_->Take(&filled)) {
    last = filled.afterExit && !filled.full;
    Napi::ObjectReference buffer = std::move(lent_.front());
    lent_.pop_front();
    // A buffer lent for records before useColumns() goes back to JS even empty: JS lends a
    // column buffer in its place.
    bool outdated = !filled.columns && columns_;
    if (!filled.delivers() && !outdated) {
      // Nothing in it: lent again, behind the others.
      if (!last) Lend(buffer.Value());
      continue;
    }
    delivered = true;
    Napi::Value next = filled.columns ? CallBack(onBatch_, {buffer.Value(), Napi::Number::New(env, filled.rows),
                                                            Napi::Number::New(env, filled.sideBytes),
                                                            Napi::Number::New(env, filled.sideRecords)})
                                      : CallBack(onBatch_, {buffer.Value(), Napi::Number::New(env, filled.bytes),
                                                            Napi::Number::New(env, filled.records)});
    if (closed_) return;
    if (!next.IsUndefined() && !Lend(next)) ReportUncaught(env);
  }
  // None lent: every buffer JS has is waiting to be read, and the ring holds the rest until lend().
  if (lent_.empty() && !last) {
    paused_ = true;
    Unwatch();
  }
  if (delivered) CallBack(onDelivered_, {});
  if (last && !closed_) End();
}

void Session::End() {
  Napi::HandleScope scope(Env());
  ended_ = true;
  Unwatch();
  CallBack(onEnd_, {});
}

// Calls JS from the loop: what it throws is the process's uncaught exception, as from any callback.
Napi::Value Session::CallBack(const Napi::FunctionReference& callback, const std::initializer_list<napi_value>& args) {
  Napi::Value result = callback.MakeCallback(Value(), args, *asyncContext_);
  ReportUncaught(Env());
  return result;
}

// Stops every watcher and callback now; hands over what must still be freed in the kernel.
KernelObjects* Session::Release() {
  if (closed_) return nullptr;
  closed_ = true;
  // Before anything it reads goes: waits for a fill under way.
  filler_.reset();
  if (watchers_) {
    Watchers* watchers = watchers_;
    watchers_ = nullptr;
    watchers->owner = nullptr;
    if (ring_) {
      uv_close(reinterpret_cast<uv_handle_t*>(&watchers->ring), Watchers::OnClosed);
      uv_close(reinterpret_cast<uv_handle_t*>(&watchers->filled), Watchers::OnClosed);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&watchers->flush), Watchers::OnClosed);
    for (Watchers::Target* target : watchers->targets)
      uv_close(reinterpret_cast<uv_handle_t*>(&target->poll), Watchers::OnClosed);
  }
  delete asyncContext_;
  asyncContext_ = nullptr;
  lent_.clear();
  if (!onBatch_.IsEmpty()) onBatch_.Reset();
  if (!onDelivered_.IsEmpty()) onDelivered_.Reset();
  if (!onEnd_.IsEmpty()) onEnd_.Reset();
  // The ring's own epoll fd never was in libuv's, so another thread may free the ring.
  KernelObjects* kernel = new KernelObjects();
  kernel->links.swap(links_);
  kernel->linkFds.swap(linkFds_);
  kernel->ring = ring_;
  kernel->object = object_;
  ring_ = nullptr;
  object_ = nullptr;
  return kernel;
}
