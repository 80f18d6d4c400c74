/**
 * @module A reader for MetaQ's server.ini (the ini4j dialect it uses): `[section]` headers,
 * `key=value` lines, `;` and `#` comments on their own lines. Keeps line numbers so errors can
 * point at the file. Knows nothing about which keys exist.
 */

export interface IniEntry {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

export interface IniSection {
  readonly name: string;
  readonly line: number;
  readonly entries: IniEntry[];
}

export class IniError extends Error {
  override readonly name = "IniError";
}

/** Parses ini text into sections in file order. Entries before any section are an error. */
export function parseIni(text: string): IniSection[] {
  const sections: IniSection[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const line = lines[index].trim();
    if (line === "" || line.startsWith(";") || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      if (!line.endsWith("]")) {
        throw new IniError(`Cannot parse line ${lineNumber}: section header lacks ']'`);
      }
      sections.push({ name: line.slice(1, -1).trim(), line: lineNumber, entries: [] });
      continue;
    }
    const equals = line.indexOf("=");
    if (equals <= 0) {
      throw new IniError(`Cannot parse line ${lineNumber}: expected key=value, got '${line}'`);
    }
    const current = sections.at(-1);
    if (!current) {
      throw new IniError(`Cannot parse line ${lineNumber}: key outside of any [section]`);
    }
    const key = line.slice(0, equals).trim();
    const value = line.slice(equals + 1).trim();
    current.entries.push({ key, value, line: lineNumber });
  }
  return sections;
}
