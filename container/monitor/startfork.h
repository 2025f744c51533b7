#ifndef VECTL_STARTFORK_H
#define VECTL_STARTFORK_H

extern int vectl_start_report_fd;
int vectl_start_wants_fork(int argc, char **argv, char **envp);
void vectl_start_fork(int argc, char **argv, char **envp);
int vectl_start_detach(int logfd, unsigned char status);

#endif
