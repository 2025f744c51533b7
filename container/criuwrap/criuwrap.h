#ifndef VECTL_CRIUWRAP_H
#define VECTL_CRIUWRAP_H

#define VECTL_CRIU_WRAP_ENV "VECTL_CRIU_WRAP"
// criu, log, user namespace, network namespace, host name, monotonic and boot-time offsets.
#define VECTL_CRIU_WRAP_FIELDS 7

void vectl_criu_wrap(int argc, char **argv);

#endif
