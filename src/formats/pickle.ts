/**
 * A restricted Python unpickler (protocols 0–5). It never runs code: a GLOBAL / STACK_GLOBAL /
 * INST / OBJ target is looked up in the caller's allow-list the moment it is named, and anything
 * else is refused right there — before any REDUCE could call it, however it is reached later
 * (memo, nesting). Python values become plain JS values:
 *   dict → plain object (keys turned into strings, see `dictKey`), list/tuple/set → array,
 *   int → number (bigint beyond 2^53), float → number, str → string, bytes → Uint8Array,
 *   None → null, bool → boolean.
 * Memory is bounded by the pickle's size: every opcode makes at most one new value and every
 * length is checked against the bytes that are left before anything is sliced.
 */
import { UnsafeFileError, UserError } from '../util/errors.js';

/** A global the caller allowed: `call` implements REDUCE / NEWOBJ / INST, `build` implements BUILD. */
export interface PyGlobal {
  readonly kind: 'global';
  readonly module: string;
  readonly name: string;
  call?(args: unknown[], kwargs?: Record<string, unknown>): unknown;
}

export interface UnpickleOptions {
  /** Label for error messages (the file, or file + zip entry). */
  source: string;
  /** Resolve module.name (after Python 2 → 3 renames) to an allowed global, or throw. */
  findGlobal(module: string, name: string): PyGlobal;
  /** Resolve a persistent id (torch storages); absent → persistent ids are refused. */
  persistentLoad?(pid: unknown): unknown;
}

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode (legacy torch files hold several pickles back to back). */
  end: number;
}

/** Thrown when the pickle runs past the end of the bytes given (the caller may retry with more). */
export class PickleTruncatedError extends UserError {}

/** An instance of an allowed inert class: its BUILD state lands on it as plain fields. */
export interface PyObject {
  [key: string]: unknown;
}

/**
 * Marks values our own code made (allowed globals, storages): a pickle can reference them but
 * never forge one from a dict, and SETITEM/BUILD/APPEND cannot change them.
 */
const INTERNAL = Symbol('sdstudio.pickle.internal');

export function markInternal<T extends object>(o: T): T {
  Object.defineProperty(o, INTERNAL, { value: true });
  return o;
}

export function isInternal(x: unknown): boolean {
  return typeof x === 'object' && x !== null && INTERNAL in x;
}

/** An allowed global that can be called (REDUCE / NEWOBJ / INST / OBJ). */
export function isCallableGlobal(x: unknown): x is PyGlobal & { call: NonNullable<PyGlobal['call']> } {
  return isInternal(x) && (x as PyGlobal).kind === 'global' && typeof (x as PyGlobal).call === 'function';
}

/** Python 2 module names that `pickle.Unpickler(fix_imports=True)` maps to Python 3 (the ones that matter here). */
const PY2_MODULES: Record<string, string> = {
  __builtin__: 'builtins',
  copy_reg: 'copyreg',
  commands: 'subprocess',
  exceptions: 'builtins',
  cPickle: 'pickle',
  UserDict: 'collections',
};

export function normaliseGlobal(module: string, name: string): [string, string] {
  return [PY2_MODULES[module] ?? module, name];
}

/** Turn a Python dict key into a JS object key. */
export function dictKey(k: unknown, source: string, depth = 0): string {
  if (depth > 16) throw new UserError(`${source}: dictionary key nested too deeply`);
  if (typeof k === 'string') return k;
  if (typeof k === 'number' || typeof k === 'bigint') return String(k);
  if (typeof k === 'boolean') return k ? 'True' : 'False';
  if (k === null) return 'None';
  if (isInternal(k) && (k as PyGlobal).kind === 'global') {
    return `${(k as PyGlobal).module}.${(k as PyGlobal).name}`;
  }
  if (Array.isArray(k)) return `(${k.map((x) => dictKey(x, source, depth + 1)).join(', ')})`;
  throw new UserError(`${source}: unsupported dictionary key in pickle`);
}

/** Set an own property even for names like "__proto__" (no prototype pollution). */
export function setKey(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return (
    typeof x === 'object' && x !== null && Object.getPrototypeOf(x) === Object.prototype && !isInternal(x)
  );
}

/** Longer integers are never in a model file, and decoding them costs quadratic time. */
const MAX_LONG_BYTES = 1024;
/** Python's own limit on int ↔ decimal string conversion. */
const MAX_INT_DIGITS = 4300;

/** Decode a little-endian two's-complement integer (LONG1/LONG4 payload). */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return narrow(v);
}

function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

const latin1 = new TextDecoder('latin1');
const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Python string-literal escapes (protocol 0 STRING). */
function unescapePyString(s: string): string {
  return s.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/gs, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    const map: Record<string, string> = {
      n: '\n',
      r: '\r',
      t: '\t',
      '\\': '\\',
      "'": "'",
      '"': '"',
      a: '\x07',
      b: '\b',
      f: '\f',
      v: '\v',
      '\n': '',
    };
    return map[e] ?? `\\${e}`;
  });
}

/** raw-unicode-escape (protocol 0 UNICODE): only \uXXXX and \UXXXXXXXX are escapes. */
function rawUnicodeUnescape(s: string): string {
  return s.replace(
    /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
    (_, a: string | undefined, b: string | undefined) => String.fromCodePoint(parseInt((a ?? b)!, 16)),
  );
}

export function unpickle(data: Uint8Array, opts: UnpickleOptions, start = 0): UnpickleResult {
  const src = opts.source;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = start;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const corrupt = (why: string) =>
    new UserError(`${src}: corrupt or unsupported pickle at byte ${pos}: ${why}`);
  const need = (n: number) => {
    if (n < 0 || pos + n > data.byteLength) {
      throw new PickleTruncatedError(`${src}: pickle data ends early (truncated file?) at byte ${pos}`);
    }
  };
  const u8 = () => {
    need(1);
    return data[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.byteLength))
      throw new PickleTruncatedError(`${src}: pickle declares ${v} bytes, more than the data holds`);
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const line = () => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) throw new PickleTruncatedError(`${src}: pickle text line never ends (truncated file?)`);
    const s = latin1.decode(data.subarray(pos, nl));
    pos = nl + 1;
    return s.endsWith('\r') ? s.slice(0, -1) : s;
  };
  const pop = () => {
    if (stack.length === 0) throw corrupt('stack underflow');
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw corrupt('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw corrupt('MARK missing');
    stack = prev;
    return items;
  };
  const findGlobal = (module: string, name: string) => {
    const [m, n] = normaliseGlobal(module, name);
    return opts.findGlobal(m, n);
  };
  const callable = (f: unknown, what: string): PyGlobal => {
    if (isCallableGlobal(f)) return f;
    throw new UnsafeFileError(
      `${src}: the pickle calls something that is not an allowed constructor (${what})`,
    );
  };
  const setItems = (d: unknown, items: unknown[]) => {
    if (!isPlainObject(d)) throw corrupt('SETITEM(S) on a non-dict');
    if (items.length % 2) throw corrupt('odd number of items for SETITEMS');
    for (let i = 0; i < items.length; i += 2) setKey(d, dictKey(items[i], src), items[i + 1]);
  };
  const getMemo = (k: number) => {
    if (!memo.has(k)) throw corrupt(`memo key ${k} missing`);
    return memo.get(k);
  };
  const newDict = (items: unknown[]) => {
    const d: Record<string, unknown> = {};
    setItems(d, items);
    return d;
  };

  while (true) {
    const op = u8();
    switch (op) {
      case 0x80: {
        const proto = u8();
        if (proto > 5) throw corrupt(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      // --- numbers
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x49: {
        // INT (text); "00"/"01" are False/True in protocol 0
        const s = line();
        if (s.length > MAX_INT_DIGITS) throw corrupt('integer too long');
        if (s === '00' || s === '01') stack.push(s === '01');
        else if (/^[+-]?\d+$/.test(s)) stack.push(narrow(BigInt(s)));
        else throw corrupt(`bad INT ${JSON.stringify(s.slice(0, 40))}`);
        break;
      }
      case 0x4c: {
        // LONG (text)
        const s = line().replace(/L$/, '');
        if (s.length > MAX_INT_DIGITS) throw corrupt('integer too long');
        if (!/^[+-]?\d+$/.test(s)) throw corrupt('bad LONG');
        stack.push(narrow(BigInt(s)));
        break;
      }
      case 0x8a: // LONG1
        stack.push(decodeLong(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) throw corrupt('negative LONG4 length');
        if (n > MAX_LONG_BYTES) throw corrupt(`integer of ${n} bytes is too large`);
        stack.push(decodeLong(bytes(n)));
        break;
      }
      case 0x46: {
        // FLOAT (text)
        const v = Number(line());
        if (Number.isNaN(v)) throw corrupt('bad FLOAT');
        stack.push(v);
        break;
      }
      case 0x47: {
        // BINFLOAT, big-endian
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      // --- strings and bytes
      case 0x53: {
        // STRING: a quoted Python literal
        const s = line();
        const q = s[0];
        if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) throw corrupt('bad STRING');
        stack.push(unescapePyString(s.slice(1, -1)));
        break;
      }
      case 0x54: {
        // BINSTRING (py2 str): read as latin-1 text
        const n = i32();
        if (n < 0) throw corrupt('negative BINSTRING length');
        stack.push(latin1.decode(bytes(n)));
        break;
      }
      case 0x55:
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x56: // UNICODE (text, raw-unicode-escape)
        stack.push(rawUnicodeUnescape(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8.decode(bytes(u32())));
        break;
      case 0x8c:
        stack.push(utf8.decode(bytes(u8())));
        break;
      case 0x8d:
        stack.push(utf8.decode(bytes(u64())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43:
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e:
        stack.push(bytes(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      case 0x97:
      case 0x98:
        throw corrupt('out-of-band buffers are not supported');
      // --- containers
      case 0x29:
        stack.push([]);
        break;
      case 0x74: // TUPLE
        {
          const items = popMark();
          stack.push(items);
        }
        break;
      case 0x85:
        stack.push([pop()]);
        break;
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        {
          const items = popMark();
          stack.push(items);
        }
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) throw corrupt('APPEND to a non-list');
        l.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) throw corrupt('APPENDS to a non-list');
        for (const v of items) l.push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push({});
        break;
      case 0x64: // DICT
        {
          const items = popMark();
          stack.push(newDict(items));
        }
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!Array.isArray(s)) throw corrupt('ADDITEMS to a non-set');
        for (const v of items) s.push(v);
        break;
      }
      case 0x91: // FROZENSET
        {
          const items = popMark();
          stack.push(items);
        }
        break;
      // --- memo
      case 0x70: {
        // PUT (text)
        const k = Number(line());
        if (!Number.isSafeInteger(k)) throw corrupt('bad PUT');
        memo.set(k, top());
        break;
      }
      case 0x71:
        memo.set(u8(), top());
        break;
      case 0x72:
        memo.set(u32(), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x67: {
        const k = Number(line());
        if (!Number.isSafeInteger(k)) throw corrupt('bad GET');
        stack.push(getMemo(k));
        break;
      }
      case 0x68:
        stack.push(getMemo(u8()));
        break;
      case 0x6a:
        stack.push(getMemo(u32()));
        break;
      // --- globals and objects: each target is checked when it is named
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          throw corrupt('STACK_GLOBAL needs two strings');
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x69: {
        // INST "module\nname\n" + MARK args
        const module = line();
        const name = line();
        const cls = findGlobal(module, name);
        const args = popMark();
        stack.push(callable(cls, `${cls.module}.${cls.name}`).call!(args));
        break;
      }
      case 0x6f: {
        // OBJ: MARK cls args
        const items = popMark();
        if (items.length === 0) throw corrupt('OBJ without a class');
        const cls = callable(items[0], 'OBJ');
        stack.push(cls.call!(items.slice(1)));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = callable(pop(), 'NEWOBJ');
        if (!Array.isArray(args)) throw corrupt('NEWOBJ arguments are not a tuple');
        stack.push(cls.call!(args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = callable(pop(), 'NEWOBJ_EX');
        if (!Array.isArray(args) || !isPlainObject(kwargs)) throw corrupt('bad NEWOBJ_EX arguments');
        stack.push(cls.call!(args, kwargs));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        const g = callable(f, 'REDUCE');
        if (!Array.isArray(args)) throw corrupt('REDUCE arguments are not a tuple');
        stack.push(g.call!(args));
        break;
      }
      case 0x62: {
        // BUILD: state onto an inert object (dict state and/or slot state)
        const state = pop();
        const obj = top();
        applyState(obj, state, corrupt);
        break;
      }
      case 0x50: {
        // PERSID (text)
        if (!opts.persistentLoad)
          throw new UnsafeFileError(`${src}: unexpected persistent id in a plain pickle`);
        stack.push(opts.persistentLoad(line()));
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad)
          throw new UnsafeFileError(`${src}: unexpected persistent id in a plain pickle`);
        stack.push(opts.persistentLoad(pid));
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84:
        throw new UnsafeFileError(
          `${src}: the pickle uses the copyreg extension registry (EXT opcodes), which is refused`,
        );
      default:
        throw corrupt(`unknown opcode 0x${op.toString(16)}`);
    }
  }
}

function applyState(obj: unknown, state: unknown, corrupt: (why: string) => Error): void {
  if (state === null) return;
  let dictState = state;
  let slotState: unknown = null;
  if (Array.isArray(state) && state.length === 2 && (state[0] === null || isPlainObject(state[0]))) {
    [dictState, slotState] = state;
  }
  if (!isPlainObject(obj)) throw corrupt('BUILD on a value that takes no state');
  const target = obj as PyObject & { __setstate__?: (s: unknown) => void };
  if (typeof target.__setstate__ === 'function') {
    target.__setstate__(state);
    return;
  }
  for (const s of [dictState, slotState]) {
    if (s === null) continue;
    if (!isPlainObject(s)) throw corrupt('BUILD state is not a dict');
    for (const [k, v] of Object.entries(s)) setKey(target, k, v);
  }
}
