// A loaded BPF object, its probe links and its ring buffer, drained on the Node event loop.
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "columns.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
class RingReader;
class FillThread;
struct KernelObjects;

class Session : public Napi::ObjectWrap<Session> {
 public:
  static Napi::Function Define(Napi::Env env);

  explicit Session(const Napi::CallbackInfo& info);
  ~Session() override;

 private:
  struct Watchers;

  Napi::Value AttachUprobes(const Napi::CallbackInfo& info);
  Napi::Value AttachRawTracepoint(const Napi::CallbackInfo& info);
  Napi::Value AttachTracing(const Napi::CallbackInfo& info);
  Napi::Value AttachPerfEvents(const Napi::CallbackInfo& info);
  Napi::Value RunIterator(const Napi::CallbackInfo& info);
  Napi::Value DumpMap(const Napi::CallbackInfo& info);
  Napi::Value UpdateMap(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value UseColumns(const Napi::CallbackInfo& info);
  Napi::Value DecodeColumns(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);

  bool SetConstants(Napi::Env env, const std::string& objectName, Napi::Object values);
  struct bpf_program* ProgramNamed(Napi::Env env, const std::string& name);
  struct bpf_map* MapNamed(Napi::Env env, const std::string& name);
  bool SetBatch(Napi::Value buffer);
  void Watch();
  void Unwatch();
  void Drain();
  void FillBatch();
  void Deliver();
  void OnTargetsExited();
  int CopyRecord(const void* data, size_t size);
  int AddRecord(const void* data, size_t size);
  KernelObjects* Release();

  static int OnRecord(void* ctx, const void* data, size_t size);
  static void FillOnThread(void* ctx);

  struct bpf_object* object_ = nullptr;
  std::vector<struct bpf_link*> links_;
  // Uprobe multi links, which libbpf cannot wrap: their fds.
  std::vector<int> linkFds_;
  // Set at load: the object's uprobe programs were loaded for uprobe multi links.
  bool multiUprobes_ = false;
  RingReader* ring_ = nullptr;
  Watchers* watchers_ = nullptr;

  Napi::ObjectReference batchRef_;
  uint8_t* batch_ = nullptr;
  size_t batchCapacity_ = 0;
  // Set once the trace is read through batches(): records fill columns instead of being copied.
  std::unique_ptr<ColumnLayout> columns_;
  // Whether the buffer held takes columns: one given before useColumns() still takes records.
  bool batchTakesColumns_ = false;

  // A fill's own state: while one is under way (filling_), only the fill thread touches it.
  bool fillColumns_ = false;
  size_t batchUsed_ = 0;
  uint32_t batchCount_ = 0;
  ColumnLayout::Fill fill_;
  // A record consumed from the ring that did not fit the batch; it opens the next one.
  std::vector<uint8_t> carry_;
  bool fillFull_ = false;
  // The targets had all exited before the fill began: a fill that empties the ring then ends it.
  bool exitedBeforeFill_ = false;

  std::unique_ptr<FillThread> filler_;
  bool filling_ = false;
  // A wakeup, tick or exit came while a fill was under way: look at the ring again after it.
  bool drainAgain_ = false;
  std::atomic<uint64_t> droppedOversized_{0};
  std::atomic<uint64_t> droppedUndecodable_{0};

  Napi::FunctionReference onBatch_;
  Napi::FunctionReference onDelivered_;
  Napi::FunctionReference onEnd_;
  Napi::AsyncContext* asyncContext_ = nullptr;
  unsigned flushIntervalMs_ = 5;

  bool started_ = false;
  bool paused_ = false;
  bool targetsExited_ = false;
  bool ended_ = false;
  bool closed_ = false;
};
