// libpq, PostgreSQL's C client (Debian libpq-dev; libpq5 at run time).
#ifndef JOBFETCH_CPQ_SHIM_H
#define JOBFETCH_CPQ_SHIM_H
#include <libpq-fe.h>
#endif
