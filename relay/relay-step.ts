import { errorMessage } from '../core/errors';

/** The step of the loop a failure happened in (for metrics and logs). */
export type RelayStage = 'claim' | 'encode' | 'publish' | 'mark' | 'leadership';

/** A failure with the step it happened in. */
export class StepFailure extends Error {
  constructor(
    readonly stage: RelayStage,
    readonly error: unknown,
  ) {
    super(errorMessage(error));
  }
}

/** Run one step of the loop; a failure carries the step it happened in (the first step that saw it). */
export async function step<T>(stage: RelayStage, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw err instanceof StepFailure ? err : new StepFailure(stage, err);
  }
}

/** The step and the underlying error of whatever the loop caught (outside any step: the claim). */
export function failureOf(caught: unknown): { stage: RelayStage; error: unknown } {
  return caught instanceof StepFailure ? caught : { stage: 'claim', error: caught };
}
