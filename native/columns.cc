#include "columns.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "bytes.h"

namespace {

// [u32 length][u32 row][record bytes]: a side record, as src/streams/batch.ts walks them.
constexpr uint32_t kSideHeader = 2 * sizeof(uint32_t);

uint64_t SignExtended(uint64_t value, uint8_t size) {
  if (size == 8) return value;
  uint64_t sign = uint64_t{1} << (size * 8 - 1);
  return (value ^ sign) - sign;
}

bool Fail(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "column layout: " + message).ThrowAsJavaScriptException();
  return false;
}

uint32_t U32(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  return value.IsNumber() ? value.As<Napi::Number>().Uint32Value() : 0;
}

bool ValidSize(uint32_t size) { return size == 1 || size == 2 || size == 4 || size == 8; }

// Rows gathered before their columns are filled: the records' lines are still in cache when
// each column's loop reads them again.
constexpr uint32_t kRowsPerPass = 256;

template <typename T>
void CopyColumn(uint8_t* to, const uint8_t* const* rows, uint32_t count, uint32_t from) {
  for (uint32_t i = 0; i < count; i++) {
    T value;
    memcpy(&value, rows[i] + from, sizeof value);
    memcpy(to + i * sizeof value, &value, sizeof value);
  }
}

}  // namespace

bool ColumnLayout::Parse(Napi::Env env, Napi::Object layout) {
  hasKind_ = layout.Get("kindOffset").IsNumber();
  kindOffset_ = U32(layout, "kindOffset");
  Napi::Value routes = layout.Get("routes");
  if (!routes.IsTypedArray() || routes.As<Napi::Uint8Array>().ByteLength() != sizeof routes_)
    return Fail(env, "routes must be a Uint8Array of 256");
  memcpy(routes_, routes.As<Napi::Uint8Array>().Data(), sizeof routes_);
  Napi::Value zero = layout.Get("sideWhenZero");
  hasSideWhenZero_ = zero.IsObject();
  if (hasSideWhenZero_) {
    sideWhenZeroOffset_ = U32(zero.As<Napi::Object>(), "offset");
    sideWhenZeroSize_ = static_cast<uint8_t>(U32(zero.As<Napi::Object>(), "size"));
    if (!ValidSize(sideWhenZeroSize_)) return Fail(env, "sideWhenZero.size must be 1, 2, 4 or 8");
  }
  minSize_ = U32(layout, "minSize");
  if (hasSideWhenZero_ && sideWhenZeroOffset_ + sideWhenZeroSize_ > minSize_) return Fail(env, "sideWhenZero reads past minSize");
  capacity_ = U32(layout, "capacity");
  // A delivery with room for no row would end before its first record, every time.
  if (capacity_ == 0) return Fail(env, "capacity must be at least 1");
  sideOffset_ = U32(layout, "sideOffset");
  sideBytes_ = U32(layout, "sideBytes");

  Napi::Value given = layout.Get("columns");
  if (!given.IsArray()) return Fail(env, "columns must be an array");
  Napi::Array columns = given.As<Napi::Array>();
  copies_.clear();
  converted_.clear();
  for (uint32_t i = 0; i < columns.Length(); i++) {
    Napi::Object spec = columns.Get(i).As<Napi::Object>();
    std::string how = spec.Get("code").ToString();
    Column column = {};
    column.from = U32(spec, "from");
    column.fromSize = static_cast<uint8_t>(U32(spec, "fromSize"));
    column.at = U32(spec, "at");
    column.width = static_cast<uint8_t>(U32(spec, "width"));
    column.conditional = spec.Get("whenOffset").IsNumber();
    column.whenOffset = U32(spec, "whenOffset");
    column.whenMask = static_cast<uint8_t>(U32(spec, "whenMask"));
    column.whenClear = spec.Get("whenClear").ToBoolean().Value();
    column.isSigned = spec.Get("signed").ToBoolean().Value();
    if (!ValidSize(column.fromSize) || !ValidSize(column.width)) return Fail(env, "sizes must be 1, 2, 4 or 8");
    if (column.from + column.fromSize > minSize_ || (column.conditional && column.whenOffset >= minSize_))
      return Fail(env, "a column reads past minSize");
    if (column.at + static_cast<uint64_t>(column.width) * capacity_ > sideOffset_)
      return Fail(env, "a column overlaps the side region");
    if (how == "bits") {
      if (column.fromSize > column.width) return Fail(env, "a bit copy cannot narrow");
      column.code = kBits;
    } else if (how == "double" && column.width == 8) {
      column.code = kDouble;
    } else if (how == "flag" && column.width == 1 && column.conditional) {
      column.code = kFlag;
    } else {
      return Fail(env, "unknown column code " + how);
    }
    if (column.code == kBits && column.fromSize == column.width && !column.conditional)
      copies_.push_back({column.from, column.at, column.width});
    else
      converted_.push_back(column);
  }
  if (hasKind_ && kindOffset_ >= minSize_) return Fail(env, "kindOffset past minSize");
  return true;
}

uint8_t ColumnLayout::RouteOf(const uint8_t* record, size_t size) const {
  if (hasKind_ && size <= kindOffset_) return kUndecodable;
  uint8_t route = routes_[hasKind_ ? record[kindOffset_] : 0];
  // A row is read at fixed offsets below minSize; a record that only goes to the side (a stack
  // trace's code names, shorter than its samples) need only reach its kind byte.
  bool row = route & kRow;
  if (size < minSize_ && (row || !hasKind_)) return kUndecodable;
  if (row && hasSideWhenZero_ && ReadUnsigned(record + sideWhenZeroOffset_, sideWhenZeroSize_) == 0) route |= kSide;
  return route;
}

// The hot loop of batches(): a pass of rows at a time, one loop per column, so that what a
// column is and how it is filled is decided once per pass rather than once per row.
void ColumnLayout::FillRows(uint8_t* buffer, uint32_t firstRow, const uint8_t* const* rows, uint32_t count) const {
  for (const Copy& copy : copies_) {
    uint8_t* to = buffer + copy.at + static_cast<size_t>(firstRow) * copy.width;
    switch (copy.width) {
      case 1: CopyColumn<uint8_t>(to, rows, count, copy.from); break;
      case 2: CopyColumn<uint16_t>(to, rows, count, copy.from); break;
      case 4: CopyColumn<uint32_t>(to, rows, count, copy.from); break;
      default: CopyColumn<uint64_t>(to, rows, count, copy.from); break;
    }
  }
  for (const Column& each : converted_) {
    // A copy in a local: the stores below may alias any memory, the layout's included.
    const Column column = each;
    uint8_t* to = buffer + column.at + static_cast<size_t>(firstRow) * column.width;
    switch (column.code) {
      case kBits:
        for (uint32_t i = 0; i < count; i++) {
          uint64_t value = column.PresentIn(rows[i]) ? ReadUnsigned(rows[i] + column.from, column.fromSize) : 0;
          WriteUnsigned(to + i * column.width, column.width, column.isSigned ? SignExtended(value, column.fromSize) : value);
        }
        break;
      case kDouble:
        for (uint32_t i = 0; i < count; i++) {
          uint64_t bits = ReadUnsigned(rows[i] + column.from, column.fromSize);
          double value = !column.PresentIn(rows[i]) ? NAN
                         : column.isSigned ? static_cast<double>(static_cast<int64_t>(SignExtended(bits, column.fromSize)))
                                           : static_cast<double>(bits);
          memcpy(to + i * sizeof value, &value, sizeof value);
        }
        break;
      case kFlag:
        for (uint32_t i = 0; i < count; i++) to[i] = column.PresentIn(rows[i]) ? 1 : 0;
        break;
    }
  }
}

size_t ColumnLayout::Add(Fill& fill, const RingRecord* records, size_t count, uint64_t& undecodable) const {
  size_t taken = 0;
  bool full = false;
  while (taken < count && !full) {
    const uint8_t* rows[kRowsPerPass];
    uint32_t firstRow = fill.rows;
    uint32_t passLimit = std::min(kRowsPerPass, capacity_ - firstRow);
    uint32_t passRows = 0;
    for (; taken < count; taken++) {
      const uint8_t* record = records[taken].data;
      uint32_t size = records[taken].size;
      uint8_t route = RouteOf(record, size);
      // Most records are a row and nothing else.
      if (route == kRow && passRows < passLimit) {
        rows[passRows++] = record;
        continue;
      }
      // A row past the pass's limit ends the pass; the buffer is full if that limit was its capacity.
      if ((route & kRow) && passRows == passLimit) {
        full = firstRow + passRows == capacity_;
        break;
      }
      if ((route & kUndecodable) || ((route & kSide) && size + kSideHeader > sideBytes_)) {
        undecodable++;
        continue;
      }
      if (route & kSide) {
        full = fill.sideUsed + kSideHeader + size > sideBytes_;
        if (full) break;
        uint8_t* at = fill.buffer + sideOffset_ + fill.sideUsed;
        uint32_t header[2] = {size, firstRow + passRows};
        memcpy(at, header, kSideHeader);
        memcpy(at + kSideHeader, record, size);
        fill.sideUsed += kSideHeader + size;
        fill.sideCount++;
      }
      if (route & kRow) rows[passRows++] = record;
    }
    FillRows(fill.buffer, firstRow, rows, passRows);
    fill.rows += passRows;
  }
  return taken;
}
