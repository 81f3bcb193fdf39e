/*
 * libtlsfallback: the tlsfallback TLS fallback policy engine for MTAs written in C.
 *
 * The engine is the tlsfallback:policy@0.2.0 WebAssembly component, embedded in and run by
 * wasmtime inside this library (nothing to install besides the library; no wasmtime headers needed). It does
 * no I/O: the MTA owns DNS, sockets, TLS, the clock and the storage of each peer's history.
 *
 * Requests and responses are the JSON lines of `tlsfallback decide` (README, "The CLI"):
 *
 *   request:  {"peer":"mx.example.net","now":1767225600,"history":null,"last":null}
 *             now: seconds since the Unix epoch; history: base64 of the blob the last
 *             response for this peer returned (null for a new peer); last: null when a
 *             delivery starts, else {"tier":"modern-tls","outcome":"tls-alert",
 *             "alert":"protocol-version"}; optional "context" and "policy" objects.
 *   response: {"peer":"mx.example.net","action":"attempt","tier":"modern-tls",
 *             "tls":{...},"delay_secs":0,"history":"AQEA...","reason":"strongest-tier",...}
 *             The MTA stores "history" for the peer and carries out "action":
 *             attempt (tier, tls, delay_secs), defer (retry_after_secs), bounce (status),
 *             done. A bad request gives {"error":"..."}.
 *
 * Thread safety: an engine is not thread-safe; use one per thread or a lock around it.
 * Creating one compiles the embedded component (about 40 ms): make engines once, at start.
 *
 * Link: cc mta.c $(pkg-config --cflags --libs tlsfallback)
 *   or: cc mta.c -I<repo>/kits/c/include -L<target>/release -ltlsfallback
 */
#ifndef TLSFALLBACK_H
#define TLSFALLBACK_H

#ifdef __cplusplus
extern "C" {
#endif

/* An engine: opaque. */
typedef struct tlsfallback_engine tlsfallback_engine;

/*
 * Creates an engine. policy_toml: the text of a tlsfallback policy file ([policy] and
 * [[destination]] tables), or NULL for the built-in defaults. Returns NULL on failure and,
 * if error is not NULL, sets *error to a message to free with tlsfallback_string_free.
 */
tlsfallback_engine *tlsfallback_engine_new(const char *policy_toml, char **error);

/*
 * Decides one request (a NUL-terminated JSON request, see above). Returns the JSON response,
 * NUL-terminated, without a newline; free it with tlsfallback_string_free. Returns NULL only
 * when memory runs out.
 */
char *tlsfallback_decide(tlsfallback_engine *engine, const char *request_json);

/* Frees a string returned by this library. NULL is allowed. */
void tlsfallback_string_free(char *text);

/* Frees an engine. NULL is allowed. */
void tlsfallback_engine_free(tlsfallback_engine *engine);

/* The library version and the interface it embeds, e.g. "0.1.0 tlsfallback:policy@0.2.0".
 * Static: do not free. */
const char *tlsfallback_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSFALLBACK_H */
