// Code blocks of the Markdown docs, for the tests that keep them true.

/** The ```ts blocks of a Markdown text (optionally only those of the section under a heading), with the line each starts at. */
export function tsBlocks(markdown: string, afterHeading?: string): { code: string; line: number }[] {
  let text = markdown;
  let offset = 0;
  if (afterHeading !== undefined) {
    const start = markdown.indexOf(afterHeading);
    if (start < 0) return [];
    const next = markdown.indexOf('\n## ', start + afterHeading.length);
    offset = markdown.slice(0, start).split('\n').length - 1;
    text = markdown.slice(start, next < 0 ? undefined : next);
  }
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => ({ code: match[1]!, line: offset + text.slice(0, match.index).split('\n').length + 1 }));
}
