import { BrokerError } from "../../lib/errors.ts";

/** The broker's refusal a request ends in (status and text); throws if it succeeds. */
export async function refusal(
  promise: Promise<unknown>,
): Promise<{ status: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BrokerError) return { status: error.status, message: error.message };
    throw error;
  }
  throw new Error("expected a refusal");
}
