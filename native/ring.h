// A BPF ring buffer read in place: the map's pages mapped once and touched up front, records
// handed over a block at a time, and the consumer position published per run of blocks rather
// than per record.
//
// The kernel maps a ring's pages on first touch: libbpf's ring_buffer takes those faults, one
// per 4 KiB, in its first pass over a fresh ring (on a busy VM, most of a backlog drain's time), and
// it stores the consumer position after every record, a cache line the producing CPUs read on
// every reserve.
#pragma once

#include <cstddef>
#include <cstdint>

// One record where it lies: read in place from the ring, it is valid only while the callback
// that was handed it runs.
struct RingRecord {
  const uint8_t* data;
  uint32_t size;
};

class RingReader {
 public:
  // Called with the next committed records, in order, a block at a time; returns how many it
  // took, from the first. Those it left stay in the ring, and the read stops there.
  using OnRecords = size_t (*)(void* context, const RingRecord* records, size_t count);

  RingReader() = default;
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;
  ~RingReader();

  // Maps the ring of a BPF_MAP_TYPE_RINGBUF map; returns 0, or a negative errno.
  int Open(int mapFd);
  // Reads every committed record there is; true if the callback left some in the ring.
  bool Consume(OnRecords onRecords, void* context);

 private:
  void Publish(uint64_t position);

  uint64_t* consumerPosition_ = nullptr;
  const uint64_t* producerPosition_ = nullptr;
  const uint8_t* data_ = nullptr;
  uint64_t mask_ = 0;
  size_t pageSize_ = 0;
  size_t dataMappingBytes_ = 0;
  uint64_t published_ = 0;
};
