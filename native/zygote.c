/*
 * zygote.c: native/build/berth-zygote, the spawn zygote (protocol in spawn.h). Started once by
 * runtime/linux/zygote.ts with its end of a SOCK_SEQPACKET socketpair as fd 3; it serves spawn
 * requests until that socket closes (the parent exited) and dies with its parent (PDEATHSIG).
 * Being small, its clone() copies a few page tables where a clone of Node copies ~90 MB worth.
 * Argument --spare-netns (long-lived callers): keep a new network namespace ready for the next
 * init, so that clone() does not create one on the caller's critical path (see spawn.c).
 */
#include "spawn.h"

#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned flags = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--spare-netns")) flags |= BERTH_ZYGOTE_SPARE_NETNS;
		else return 2;
	}
	pid_t parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent) return 1;
	/* Every disposition the default (whoever exec'd us may have ignored some), then SIGPIPE
	 * ignored: the only one spawn.c resets in the inits the zygote clones. */
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	return berth_zygote_serve_flags(3, flags) == 0 ? 0 : 1;
}
