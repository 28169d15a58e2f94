// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helper of tests/test_slabinfo.py: Daniel Forrest's fork chain (the
 * reproducer behind the 2015 anon_vma reuse rule), with known mappings.
 *
 * Usage: fork_chain VMAS GENERATIONS [SYNC]
 * The first process maps VMAS four-page anonymous regions with a gap after
 * each (so none merges) and writes them. Then, GENERATIONS times, the newest
 * process forks, the child writes one page of each region and the parent
 * exits. With SYNC 1 (the default), a child forks only after its parent
 * has finished exiting; with 0 it does not wait. This program is a child
 * subreaper, so the dead generations are reparented to it and reaped here. When the last generation is alive and
 * every other one reaped, it prints "ready <pid>" and waits for a byte on
 * stdin; then it lets the last generation exit and reaps it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long pg = sysconf(_SC_PAGESIZE);
	int vmas, gens, synced, i, g, status, up[2], down[2];
	char c = 0, *base;
	pid_t first, last;

	if (argc != 3 && argc != 4)
		return 2;
	vmas = atoi(argv[1]);
	gens = atoi(argv[2]);
	synced = argc == 4 ? atoi(argv[3]) : 1;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) || pipe(up) || pipe(down))
		return 1;
	first = fork();
	if (first < 0)
		return 1;
	if (first == 0) {
		base = mmap(NULL, 8 * vmas * pg, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED || munmap(base, 8 * vmas * pg))
			_exit(1);
		for (i = 0; i < vmas; i++) {
			char *a = mmap(base + 8 * i * pg, 4 * pg,
				       PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS |
				       MAP_FIXED_NOREPLACE, -1, 0);
			if (a == MAP_FAILED)
				_exit(1);
			for (g = 0; g < 4; g++)
				a[g * pg] = 1;
		}
		for (g = 0; g < gens; g++) {
			pid_t parent = getpid(), child = fork();

			if (child < 0)
				_exit(1);
			if (child > 0)
				_exit(0);	/* the parent exits */
			for (i = 0; i < vmas; i++)
				base[8 * i * pg] = 2;
			/* Fork again only once the parent has gone: exit tears
			 * the mm down before reparenting, so its anon_vmas are
			 * then free to reuse (as in the model's experiment). */
			if (!synced)
				continue;
			while (getppid() == parent)
				usleep(100);
		}
		last = getpid();
		if (write(up[1], &last, sizeof(last)) != sizeof(last) ||
		    read(down[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	if (read(up[0], &last, sizeof(last)) != sizeof(last))
		return 1;
	/* every generation but the last has exited: reap them all */
	for (i = 0; i < gens; i++)
		if (waitpid(-1, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			return 1;
	printf("ready %d\n", (int)last);
	fflush(stdout);
	if (read(0, &c, 1) != 1 || write(down[1], &c, 1) != 1)
		return 1;
	if (waitpid(last, &status, 0) != last || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		return 1;
	return 0;
}
