// NBD handshake constants (the NBD protocol document, doc/proto.md of NetworkBlockDevice/nbd). Every integer on the
// wire is big-endian. Only what this server speaks is named here; the rest of the protocol is answered as
// unsupported. The transmission phase has its own in C++ (native/src/core/nbd_request.hpp).

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": second server magic of the newstyle greeting, and the magic of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Magic of every fixed-newstyle option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;

// Handshake flags (server, 16 bits) and client flags (32 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (16 bits).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// Option replies.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0;
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0;
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0;
export const NBD_REP_ERR_PLATFORM = (NBD_REP_FLAG_ERROR | 4) >>> 0;
export const NBD_REP_ERR_TLS_REQD = (NBD_REP_FLAG_ERROR | 5) >>> 0;
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0;
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = (NBD_REP_FLAG_ERROR | 8) >>> 0;
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0;

// Information types of NBD_REP_INFO.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Sizes of the fixed parts of the messages. */
export const GREETING_SIZE = 18; // NBDMAGIC, IHAVEOPT, handshake flags
export const CLIENT_FLAGS_SIZE = 4;
export const OPTION_HEADER_SIZE = 16; // IHAVEOPT, option, length
export const OPTION_REPLY_HEADER_SIZE = 20; // magic, option, reply type, length

/** Strings (export names, descriptions) MUST NOT be longer than this (proto.md, Conventions). */
export const MAX_STRING_BYTES = 4096;

export function optionName(option: number): string {
  switch (option) {
    case NBD_OPT_EXPORT_NAME:
      return 'EXPORT_NAME';
    case NBD_OPT_ABORT:
      return 'ABORT';
    case NBD_OPT_LIST:
      return 'LIST';
    case NBD_OPT_STARTTLS:
      return 'STARTTLS';
    case NBD_OPT_INFO:
      return 'INFO';
    case NBD_OPT_GO:
      return 'GO';
    case NBD_OPT_STRUCTURED_REPLY:
      return 'STRUCTURED_REPLY';
    case NBD_OPT_LIST_META_CONTEXT:
      return 'LIST_META_CONTEXT';
    case NBD_OPT_SET_META_CONTEXT:
      return 'SET_META_CONTEXT';
    default:
      return `OPT_${option}`;
  }
}
