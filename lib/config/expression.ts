/**
 * @module Evaluates the small arithmetic expressions MetaQ accepts as numeric config values
 * (`1024*1024`, `(1+2)*3`): integers, + - * / %, unary minus and parentheses. No names, no
 * function calls: a config file can never run code.
 */

export class ExpressionError extends Error {
  override readonly name = "ExpressionError";
}

/** Evaluates `text` to an integer; division truncates as Java's does. */
export function evaluateInteger(text: string): number {
  const tokens = tokenize(text);
  let position = 0;

  const peek = () => tokens[position];
  const next = () => tokens[position++];

  function primary(): number {
    const token = next();
    if (token === "(") {
      const value = sum();
      if (next() !== ")") throw new ExpressionError(`Cannot evaluate '${text}': missing ')'`);
      return value;
    }
    if (token === "-") return -primary();
    if (token === "+") return primary();
    if (token !== undefined && /^\d+$/.test(token)) return Number(token);
    throw new ExpressionError(`Cannot evaluate '${text}': unexpected '${token ?? "end"}'`);
  }

  function product(): number {
    let value = primary();
    while (peek() === "*" || peek() === "/" || peek() === "%") {
      const operator = next();
      const right = primary();
      if (operator !== "*" && right === 0) {
        throw new ExpressionError(`Cannot evaluate '${text}': division by zero`);
      }
      value = operator === "*"
        ? value * right
        : operator === "/"
        ? Math.trunc(value / right)
        : value % right;
    }
    return value;
  }

  function sum(): number {
    let value = product();
    while (peek() === "+" || peek() === "-") {
      const operator = next();
      const right = product();
      value = operator === "+" ? value + right : value - right;
    }
    return value;
  }

  const value = sum();
  if (position !== tokens.length) {
    throw new ExpressionError(`Cannot evaluate '${text}': unexpected '${tokens[position]}'`);
  }
  if (!Number.isSafeInteger(value)) {
    throw new ExpressionError(`Cannot evaluate '${text}': result is not a safe integer`);
  }
  return value;
}

function tokenize(text: string): string[] {
  const tokens = text.match(/\d+|[-+*/%()]|\S/g) ?? [];
  for (const token of tokens) {
    if (!/^(\d+|[-+*/%()])$/.test(token)) {
      throw new ExpressionError(`Cannot evaluate '${text}': unexpected '${token}'`);
    }
  }
  if (tokens.length === 0) throw new ExpressionError("Cannot evaluate an empty value");
  return tokens;
}

/** Parses a boolean the way MetaQ's config does: true/false, case-insensitive. */
export function parseBoolean(text: string): boolean {
  const lower = text.trim().toLowerCase();
  if (lower === "true") return true;
  if (lower === "false") return false;
  throw new ExpressionError(`Cannot parse '${text}' as a boolean: expected true or false`);
}
