// SQLITE_TRANSIENT is a cast of -1 to a function pointer, which Swift cannot
// import; expose bind helpers that use it so bound text is copied by SQLite.
#ifndef JOBFETCH_CSQLITE_SHIM_H
#define JOBFETCH_CSQLITE_SHIM_H
#include <sqlite3.h>

#pragma clang assume_nonnull begin
static inline int jf_sqlite_bind_text(sqlite3_stmt *s, int i, const char *v, int n) {
    return sqlite3_bind_text(s, i, v, n, SQLITE_TRANSIENT);
}
static inline int jf_sqlite_bind_blob(sqlite3_stmt *s, int i, const void *_Nullable v, int n) {
    return sqlite3_bind_blob(s, i, v, n, SQLITE_TRANSIENT);
}
#pragma clang assume_nonnull end
#endif
