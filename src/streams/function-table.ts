import { IdTable } from './id-table.js'

/** A function's names, as `batch.function(id)` gives them: the same as a call event's. */
export interface FunctionName {
  /** The function's source file, as the code object names it. */
  readonly file: string
  /** The function's name. */
  readonly func: string
  /** The file or function name was longer than 512 bytes and arrives cut to that. */
  readonly truncated: boolean
}

/**
 * The ids `batch.functionId` holds, as `IdTable` gives them: one per distinct (file, function,
 * truncated). There is no cap on them: the functions are those of the code the target runs,
 * whose names do not grow with the data it handles, as strings and stacks can. The kernel's
 * name ids (bpf/python_names.bpf.h) are not these ids: one is forgotten when CPython frees the
 * code object, and the same names come back under a new one, so they only lead here.
 */
export class FunctionTable extends IdTable<FunctionName> {
  /**
   * Kernel name id to function id + 1 (0: not known now): a name id is small, dense and never
   * reused, so an array beats a Map in the batch loop, at 4 bytes per name the kernel sent.
   */
  #byNameId = new Int32Array(1024)

  constructor() {
    super('function', 'batch.functionId')
  }

  /** The id of these names, given on their first sighting. */
  idOf(file: string, func: string, truncated: boolean): number {
    const key = `${truncated ? 't' : 'f'}${file}\0${func}`
    return this.find(key) ?? this.add(key, Object.freeze({ file, func, truncated }))
  }

  /** The kernel sent the names behind `nameId` (a CALL_NAMES record). */
  learn(nameId: number, file: string, func: string, truncated: boolean): void {
    if (nameId >= this.#byNameId.length) {
      const grown = new Int32Array(Math.max(nameId + 1, this.#byNameId.length * 2))
      grown.set(this.#byNameId)
      this.#byNameId = grown
    }
    this.#byNameId[nameId] = this.idOf(file, func, truncated) + 1
  }

  /** The code object behind `nameId` was freed: its name id is never seen again. */
  forget(nameId: number): void {
    if (nameId < this.#byNameId.length) this.#byNameId[nameId] = 0
  }

  /**
   * Kernel name id to function id + 1, 0 or out of range for a name id not known now: for a
   * loop over many records, valid until the next `learn`.
   */
  get byNameId(): Int32Array {
    return this.#byNameId
  }
}

export function unknownNames(nameId: number): Error {
  return new Error(`usdtrace: a call refers to names ${nameId} that never arrived`)
}
