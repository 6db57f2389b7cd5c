/** Aligned text tables: left-aligned text columns, right-aligned numbers, two spaces between. */
export interface Column {
  title: string
  align: 'left' | 'right'
}

export function formatTable(columns: Column[], rows: string[][]): string[] {
  const widths = columns.map((column, i) => Math.max(column.title.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (columns[i]!.align === 'left' ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.title)), ...rows.map(line)]
}

/** Cuts text to `width` columns with an ellipsis on the given side. */
export function cut(text: string, width: number, side: 'start' | 'end' = 'end'): string {
  if (text.length <= width) return text
  return side === 'end' ? `${text.slice(0, width - 1)}…` : `…${text.slice(text.length - width + 1)}`
}
