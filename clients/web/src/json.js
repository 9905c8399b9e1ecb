// Strict readers for JSON from the network (the package, the role checks):
// each takes the `refuse(why)` of its document so a refusal names it.

import { fromHex, isUuid, uuidToBytes } from './bytes.js';

/** The readers of one document; `refuse(why)` makes its error. */
export function jsonReader(refuse) {
  const object = (value, members, where) => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw refuse(`${where} is not an object`);
    for (const k of Object.keys(value)) {
      if (!members.includes(k)) throw refuse(`${where} has an unknown member ${JSON.stringify(k)}`);
    }
    for (const k of members) {
      if (!(k in value)) throw refuse(`${where} lacks ${JSON.stringify(k)}`);
    }
    return value;
  };
  const array = (value, where) => {
    if (!Array.isArray(value)) throw refuse(`${where} is not an array`);
    return value;
  };
  const id = (value, where) => {
    if (!isUuid(value)) throw refuse(`${where} is not a lowercase UUID`);
    return { text: value, bytes: uuidToBytes(value) };
  };
  const hex = (value, where) => {
    if (typeof value !== 'string') throw refuse(`${where} is not a hex string`);
    try {
      return fromHex(value, where);
    } catch {
      throw refuse(`${where} is not lowercase hex`);
    }
  };
  /** Text, bytes or parsed JSON → parsed JSON. */
  const parse = (input) => {
    let json = input;
    if (input instanceof Uint8Array) json = new TextDecoder('utf-8', { fatal: true }).decode(input);
    if (typeof json === 'string') {
      try {
        json = JSON.parse(json);
      } catch {
        throw refuse('not JSON');
      }
    }
    return json;
  };
  return { object, array, id, hex, parse };
}
