/**
 * What bpf/python_names.bpf.h needs to know about a CPython build to name functions by
 * identity: where code_dealloc is, and where PyCodeObject and str keep what it reads. The
 * offsets were measured on CPython builds of each version (test/python-layout.test.ts measures
 * them again with ctypes wherever such a build is installed); a version not listed gets no hook,
 * and its calls are named by reading their strings every time, as correct and slower.
 */
import { readFunctionPointer } from '../process/elf.js'
import type { Inspection } from '../process/inspect.js'

interface CodeLayout {
  code_filename_offset: number
  code_name_offset: number
  unicode_state_offset: number
  unicode_ascii_data_offset: number
  unicode_utf8_offset: number
}

// PyASCIIObject before 3.12: refcnt, type, length, hash, state, wstr; then utf8_length, utf8.
const UNICODE_BEFORE_3_12 = { unicode_state_offset: 32, unicode_ascii_data_offset: 48, unicode_utf8_offset: 56 }

/** By 3.x minor: the versions that have function__entry/return (3.12 to 3.14 have none). */
export const CODE_LAYOUTS: Readonly<Record<number, CodeLayout>> = {
  6: { code_filename_offset: 96, code_name_offset: 104, ...UNICODE_BEFORE_3_12 },
  7: { code_filename_offset: 96, code_name_offset: 104, ...UNICODE_BEFORE_3_12 },
  8: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  9: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  10: { code_filename_offset: 104, code_name_offset: 112, ...UNICODE_BEFORE_3_12 },
  11: { code_filename_offset: 112, code_name_offset: 120, ...UNICODE_BEFORE_3_12 },
}

// PyTypeObject: ob_refcnt, ob_type, ob_size, tp_name, tp_basicsize, tp_itemsize, tp_dealloc.
const TP_DEALLOC_OFFSET = 48

/** Where to hook code_dealloc in each target, and the constants that go with it. */
export interface CodeDeallocHooks {
  constants: CodeLayout
  sites: { target: Inspection; fileOffset: bigint }[]
}

/** The hooks for every target, or null when a target's version is not listed or the targets differ in layout. */
export function codeDeallocHooks(targets: Inspection[]): CodeDeallocHooks | null {
  const sites: CodeDeallocHooks['sites'] = []
  let constants: CodeLayout | undefined
  for (const target of targets) {
    const layout = target.version?.major === 3 ? CODE_LAYOUTS[target.version.minor] : undefined
    if (!layout || !target.probeObject || (constants && constants !== layout)) return null
    const fileOffset = readFunctionPointer(target.probeObject, 'PyCode_Type', TP_DEALLOC_OFFSET)
    if (fileOffset === undefined) return null
    constants = layout
    sites.push({ target, fileOffset })
  }
  return constants ? { constants, sites } : null
}
