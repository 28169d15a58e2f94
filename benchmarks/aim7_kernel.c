// SPDX-License-Identifier: GPL-2.0-only
/*
 * aim7_kernel.c - the AIM7-like forking server of anon_vma_chain's posting
 * (Rik van Riel, January 2010) on the real kernel.
 *
 * The baseline for benchmarks/aim7.py: a parent maps PAGES private
 * anonymous pages, writes one byte in each, forks PROCS children that are
 * all alive at once; each child writes one byte in every page (breaking
 * COW), reports on the "ready" pipe and blocks on the "go" pipe. When all
 * children have written, the parent closes "go" (every child reads EOF and
 * _exits) and reaps them all.
 *
 * Usage: aim7_kernel PROCS PAGES
 *
 * Output: one line of key=value pairs (seconds, from CLOCK_MONOTONIC in the
 * parent; the children's minor faults and largest ru_maxrss from
 * getrusage(RUSAGE_CHILDREN); the parent's VmHWM), for the Python driver
 * to parse:
 *   setup=  mmap + parent writes
 *   fork=   the parent's fork loop (children already write meanwhile)
 *   written= from the end of the fork loop until the last child reported
 *   exits=  from releasing the children until the last one was reaped
 *   total=  the whole scenario
 * The kernel does no rmap walk here (no memory pressure), so it has no
 * counterpart of the model's page_referenced phase.
 *
 * Exit status: 0 on success, 1 on a failed syscall or child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAP_HINT ((void *)0x100000000000UL)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmHWM of this mm in KiB (ru_maxrss would carry the exec'ing parent's peak). */
static long vm_hwm_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static void touch(volatile char *buf, long pages, long psz, char value)
{
	for (long i = 0; i < pages; i++)
		buf[i * psz] = value;
}

/* Read exactly n bytes (or up to EOF); returns the number read. */
static long read_n(int fd, long n)
{
	char chunk[4096];
	long got = 0;

	while (got < n) {
		long want = n - got < (long)sizeof(chunk) ? n - got : (long)sizeof(chunk);
		ssize_t r = read(fd, chunk, (size_t)want);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

static void child(volatile char *buf, long pages, long psz, int ready_w, int go_r)
{
	char c = 'x';

	touch(buf, pages, psz, 2);
	while (write(ready_w, &c, 1) < 0 && errno == EINTR)
		;
	/* Block until the parent closes the write end: EOF releases us. */
	while (read(go_r, &c, 1) < 0 && errno == EINTR)
		;
	_exit(buf[0] == 2 ? 0 : 1);
}

int main(int argc, char **argv)
{
	int ready[2], go[2];
	long procs, pages, psz, forked = 0, failed = 0;
	double t0, t_setup, t_fork, t_written, t_end;
	struct rusage kids;
	pid_t *pids;
	char *buf;

	if (argc != 3) {
		fprintf(stderr, "usage: %s PROCS PAGES\n", argv[0]);
		return 1;
	}
	procs = atol(argv[1]);
	pages = atol(argv[2]);
	if (procs < 0 || pages < 1) {
		fprintf(stderr, "PROCS must be >= 0 and PAGES >= 1\n");
		return 1;
	}
	/* Base pages only, as the model has them. */
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) {
		perror("prctl(PR_SET_THP_DISABLE)");
		return 1;
	}
	psz = sysconf(_SC_PAGESIZE);
	pids = calloc((size_t)procs + 1, sizeof(*pids));
	if (!pids || pipe(ready) || pipe(go)) {
		perror("setup");
		return 1;
	}

	t0 = now();
	buf = mmap(MAP_HINT, (size_t)(pages * psz), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	touch(buf, pages, psz, 1);
	t_setup = now();

	for (; forked < procs; forked++) {
		pid_t pid = fork();

		if (pid == 0) {
			close(ready[0]);
			close(go[1]);
			child(buf, pages, psz, ready[1], go[0]);
		}
		if (pid < 0) {
			perror("fork");
			break;
		}
		pids[forked] = pid;
	}
	t_fork = now();

	close(ready[1]);
	if (read_n(ready[0], forked) != forked) {
		fprintf(stderr, "a child died before it reported\n");
		failed++;
	}
	t_written = now();

	close(go[1]); /* release every child at once */
	for (long i = 0; i < forked; i++) {
		int status;

		while (waitpid(pids[i], &status, 0) < 0) {
			if (errno != EINTR) {
				perror("waitpid");
				return 1;
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	t_end = now();

	getrusage(RUSAGE_CHILDREN, &kids);
	printf("procs=%ld pages=%ld forked=%ld failed=%ld setup=%.6f fork=%.6f "
	       "written=%.6f exits=%.6f total=%.6f minflt_children=%ld "
	       "hwm_parent_kib=%ld maxrss_child_kib=%ld\n",
	       procs, pages, forked, failed, t_setup - t0, t_fork - t_setup,
	       t_written - t_fork, t_end - t_written, t_end - t0, kids.ru_minflt,
	       vm_hwm_kib(), kids.ru_maxrss);
	munmap(buf, (size_t)(pages * psz));
	free(pids);
	return (forked == procs && failed == 0) ? 0 : 1;
}
