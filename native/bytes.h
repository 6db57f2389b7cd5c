#pragma once

#include <cstdint>
#include <cstring>

// Little-endian fields of 1, 2, 4 or 8 bytes at any alignment, as BPF writes records and maps.

inline uint64_t ReadUnsigned(const uint8_t* at, uint32_t size) {
  switch (size) {
    case 1: return at[0];
    case 2: { uint16_t v; memcpy(&v, at, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, at, 4); return v; }
    default: { uint64_t v; memcpy(&v, at, 8); return v; }
  }
}

inline void WriteUnsigned(uint8_t* at, uint32_t size, uint64_t value) {
  switch (size) {
    case 1: at[0] = static_cast<uint8_t>(value); break;
    case 2: { uint16_t v = static_cast<uint16_t>(value); memcpy(at, &v, 2); break; }
    case 4: { uint32_t v = static_cast<uint32_t>(value); memcpy(at, &v, 4); break; }
    default: memcpy(at, &value, 8);
  }
}
