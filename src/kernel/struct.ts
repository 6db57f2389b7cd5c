/** A struct as src/kernel/abi.ts describes it: its size, and each field's offset and size. */
export interface StructLayout<Field extends string> {
  size: number
  fields: Readonly<Record<Field, number>>
  sizes: Readonly<Record<Field, number>>
}

/** The struct's bytes with the given integer fields set at their own widths, little-endian; the rest zero. */
export function encodeStruct<Field extends string>(layout: StructLayout<Field>, values: Partial<Record<Field, number | bigint>>): Uint8Array {
  const bytes = new Uint8Array(layout.size)
  const view = new DataView(bytes.buffer)
  for (const [field, value] of Object.entries(values) as [Field, number | bigint][]) {
    const at = layout.fields[field]
    switch (layout.sizes[field]) {
      case 1:
        view.setUint8(at, Number(value))
        break
      case 2:
        view.setUint16(at, Number(value), true)
        break
      case 4:
        view.setUint32(at, Number(value), true)
        break
      case 8:
        view.setBigUint64(at, BigInt(value), true)
        break
      default:
        throw new RangeError(`field ${field} is ${layout.sizes[field]} bytes wide, not an integer`)
    }
  }
  return bytes
}
