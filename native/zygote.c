/*
 * zygote.c: native/build/berth-zygote, the spawn zygote (protocol in spawn.h). Started once by
 * runtime/linux/zygote.ts with its end of a SOCK_SEQPACKET socketpair as fd 3; it serves spawn
 * requests until that socket closes (the parent exited) and dies with its parent (PDEATHSIG).
 * Being small, its clone() copies a few page tables where a clone of Node copies ~90 MB worth.
 */
#include "spawn.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void)
{
	pid_t parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent) return 1;
	signal(SIGPIPE, SIG_IGN);
	return berth_zygote_serve(3) == 0 ? 0 : 1;
}
