/* ctl.h -- the subcommands of sluicectl, one file each (cmd/ctl_<name>.c).
 *
 * Each takes the arguments after its name (argv[0] is the subcommand) and
 * returns the process exit status: 0 success, 1 a negative answer (invalid
 * instance, failed check), 2 usage or setup error. The table in sluicectl.c
 * names them; a subcommand whose file is not linked in is reported as not
 * available in this build.
 */
#ifndef SL_CTL_H
#define SL_CTL_H

#define SL_CTL_WEAK __attribute__((weak))

int sl_ctl_migrate(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_enqueue(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_tail(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_validate(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_dlq(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_lag(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_status(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_check_config(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_outbox(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_schedule(int argc, char **argv) SL_CTL_WEAK;
int sl_ctl_console(int argc, char **argv) SL_CTL_WEAK;

#endif
