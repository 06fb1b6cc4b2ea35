/**
 * The CLI's stop signals in process (the real-process behaviour is in test/pipeline/cli-job.test.ts):
 * the first SIGINT/SIGTERM/SIGHUP asks the job to stop, the same signal again within a second is the
 * same event arriving twice (terminal + launcher), any later one quits now with 128 + its number.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { signalExitCode, trapSignals } from '../../src/cli/generate-command.js';

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('trapSignals', () => {
  it('first signal stops after the step; a repeat within a second is ignored; a later one exits now', () => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const stop = { interrupted: false, skipped: false };
    const before = process.listenerCount('SIGTERM');
    const trap = trapSignals(stop);
    try {
      expect(process.listenerCount('SIGTERM')).toBe(before + 1);
      process.emit('SIGTERM');
      expect(stop.interrupted).toBe(true);
      expect(trap.signal()).toBe('SIGTERM');
      expect(String(stderr.mock.calls[0]![0])).toContain('SIGTERM: stopping after the current step');
      vi.setSystemTime(1_000_500);
      process.emit('SIGTERM');
      expect(exit).not.toHaveBeenCalled();
      vi.setSystemTime(1_001_500);
      process.emit('SIGINT');
      expect(exit).toHaveBeenCalledWith(130);
    } finally {
      trap.dispose();
    }
    expect(process.listenerCount('SIGTERM')).toBe(before);
    expect([signalExitCode('SIGHUP'), signalExitCode('SIGINT'), signalExitCode('SIGTERM')]).toEqual([
      129, 130, 143,
    ]);
  });

  it('a different signal right after the first quits at once', () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const exit = vi.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const trap = trapSignals({ interrupted: false, skipped: false });
    try {
      process.emit('SIGHUP');
      expect(exit).not.toHaveBeenCalled();
      process.emit('SIGTERM');
      expect(exit).toHaveBeenCalledWith(143);
    } finally {
      trap.dispose();
    }
  });
});
