import ms from 'ms';

/** Parses `15m`, `8h`, `1500ms`, `30s`, `2d` or a bare number of milliseconds. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) > 0 ? Number(trimmed) : undefined;
  if (!/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/i.test(trimmed)) return undefined;
  const value = ms(trimmed as ms.StringValue);
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

export const formatDuration = (milliseconds: number) => ms(milliseconds);
