// A loaded BPF object, its probe links and its ring buffer, drained on the Node event loop.
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "columns.h"
#include "fill_thread.h"
#include "ring.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
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
  Napi::Value LendBuffer(const Napi::CallbackInfo& info);
  Napi::Value UseColumns(const Napi::CallbackInfo& info);
  Napi::Value DecodeColumns(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);

  bool SetConstants(Napi::Env env, const std::string& objectName, Napi::Object values);
  struct bpf_program* ProgramNamed(Napi::Env env, const std::string& name);
  struct bpf_map* MapNamed(Napi::Env env, const std::string& name);
  bool Lend(Napi::Value buffer);
  void Watch();
  void Unwatch();
  void Drain();
  Filled Fill(const FillBuffer& buffer);
  void OnFilled();
  void End();
  Napi::Value CallBack(const Napi::FunctionReference& callback, const std::initializer_list<napi_value>& args);
  void OnTargetsExited();
  size_t TakeRecords(const RingRecord* records, size_t count);
  size_t CopyRecords(const RingRecord* records, size_t count);
  KernelObjects* Release();

  static size_t OnRecords(void* ctx, const RingRecord* records, size_t count);
  static Filled FillOnThread(void* ctx, const FillBuffer& buffer);

  struct bpf_object* object_ = nullptr;
  std::vector<struct bpf_link*> links_;
  // Uprobe multi links, which libbpf cannot wrap: their fds.
  std::vector<int> linkFds_;
  // Set at load: the object's uprobe programs were loaded for uprobe multi links.
  bool multiUprobes_ = false;
  RingReader* ring_ = nullptr;
  Watchers* watchers_ = nullptr;

  // The buffers lent to the fill thread, oldest first: each is delivered in its turn. None: paused.
  std::deque<Napi::ObjectReference> lent_;
  // Set once the trace is read through batches(): buffers lent from then on take its columns.
  std::unique_ptr<ColumnLayout> columns_;
  std::unique_ptr<FillThread> filler_;

  // The fill thread's own: the buffer it fills and where that stands.
  FillBuffer filling_ = {};
  size_t batchUsed_ = 0;
  uint32_t batchCount_ = 0;
  ColumnLayout::Fill fill_;
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
