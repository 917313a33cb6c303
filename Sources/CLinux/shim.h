// Linux interfaces that Swift's Glibc module does not import: signalfd.
#ifndef JOBFETCH_CLINUX_SHIM_H
#define JOBFETCH_CLINUX_SHIM_H
#include <sys/signalfd.h>
#endif
