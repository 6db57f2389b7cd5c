// What `trace.batches()` is filled by: ring records decoded straight into typed-array columns,
// one row per event, by a layout the stream declares in JS (src/streams/batch.ts). Records a
// stream must look at in JS (names, strings, stacks) are also copied whole to the buffer's side
// region with the row they belong to.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

class ColumnLayout {
 public:
  // Parses the layout JS built (src/streams/batch.ts, nativeLayout); false after throwing.
  bool Parse(Napi::Env env, Napi::Object layout);

  // Buffer positions: rows below `capacity`, side records in [sideOffset, sideOffset + sideBytes).
  uint32_t capacity() const { return capacity_; }
  // The least a buffer must hold: the columns and the side region.
  size_t bufferBytes() const { return static_cast<size_t>(sideOffset_) + sideBytes_; }

  // Where a delivery being filled stands.
  struct Fill {
    uint8_t* buffer = nullptr;
    uint32_t rows = 0;
    uint32_t sideUsed = 0;
    uint32_t sideCount = 0;
  };

  enum Result { kAdded, kFull, kUndecodable };
  // Adds one record: kFull leaves `fill` as it was (the record opens the next delivery);
  // kUndecodable: a row shorter than minSize (a side-only record need only reach its kind byte),
  // or a side record larger than a whole side region.
  Result Add(Fill& fill, const uint8_t* record, size_t size) const;

 private:
  enum Route : uint8_t { kRow = 1, kSide = 2 };
  enum Code : uint8_t { kBits, kDouble, kFlag };
  struct Column {
    uint32_t from;
    uint32_t at;  // the column's byte offset in the buffer
    uint8_t fromSize;
    uint8_t width;
    Code code;
    bool isSigned;
    // Present only where the byte at whenOffset has a bit of whenMask set (clear, with whenClear).
    bool conditional;
    bool whenClear;
    uint32_t whenOffset;
    uint8_t whenMask;
  };

  // A field copied as it is into a column as wide, on every row: most columns are these, and the
  // hot loop takes them in runs of one width, with no decision per column.
  struct Copy {
    uint32_t from;
    uint32_t at;
  };

  uint8_t RouteOf(const uint8_t* record) const;
  template <typename T>
  static void CopyRun(const std::vector<Copy>& run, uint8_t* buffer, uint32_t row, const uint8_t* record);
  void FillRow(uint8_t* buffer, uint32_t row, const uint8_t* record) const;

  bool hasKind_ = false;
  uint32_t kindOffset_ = 0;
  uint8_t routes_[256] = {};
  // Rows whose field here is 0 also go to the side (e.g. a call that carries its own names).
  bool hasSideWhenZero_ = false;
  uint32_t sideWhenZeroOffset_ = 0;
  uint8_t sideWhenZeroSize_ = 0;
  uint32_t minSize_ = 0;
  uint32_t capacity_ = 0;
  uint32_t sideOffset_ = 0;
  uint32_t sideBytes_ = 0;
  std::vector<Copy> copies_[4];  // by width: 1, 2, 4, 8 bytes
  std::vector<Column> converted_;  // the rest: widened, converted to doubles, flags, conditional
};
