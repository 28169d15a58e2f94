// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helper of tests/test_slabinfo.py: a process with known anonymous mappings
 * forks N children that stay alive, so that /proc/slabinfo can be read with
 * all of them present.
 *
 * Usage: slabinfo_fork N REGIONS
 * Maps REGIONS one-page anonymous regions with a hole on each side (so none
 * merges), writes every other one (those get an anon_vma), forks N children
 * that block on a pipe, prints "ready <pid>", waits for a byte on stdin,
 * then releases and reaps the children.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long pg = sysconf(_SC_PAGESIZE);
	int n, regions, i, pfd[2];
	char *base, c;

	if (argc != 3)
		return 2;
	n = atoi(argv[1]);
	regions = atoi(argv[2]);
	/* Find room, then map each region alone with a hole on both sides, so
	 * that none merges with another or with a VMA of the C library (a
	 * merged region would share that VMA's anon_vma, and so would the
	 * pieces of any later split). */
	base = mmap(NULL, (2 * regions + 1) * pg, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED || munmap(base, (2 * regions + 1) * pg))
		return 1;
	for (i = 0; i < regions; i++)
		if (mmap(base + (2 * i + 1) * pg, pg, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			 -1, 0) == MAP_FAILED)
			return 1;
	for (i = 0; i < regions; i += 2)
		base[(2 * i + 1) * pg] = 1;
	if (pipe(pfd))
		return 1;
	for (i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			close(pfd[1]);
			if (read(pfd[0], &c, 1) < 0)
				_exit(1);
			_exit(0);
		}
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	if (read(0, &c, 1) < 0)
		return 1;
	close(pfd[1]);
	while (wait(NULL) > 0)
		;
	return 0;
}
