// The client's whole flow against a running server: log in, list offers,
// activate one, poll until it settles, and see a refused limit as a typed
// problem. usage: node dist/flow.js BASE_URL USERNAME PASSWORD
import { OffersClient, ProblemError } from "./offers";

async function main(): Promise<void> {
  const [base, username, password] = process.argv.slice(2);
  if (!base || !username || !password) throw new Error("usage: flow BASE_URL USERNAME PASSWORD");
  const client = new OffersClient(base);

  const tokens = await client.login(username, password);
  console.log(`logged in as ${username} (token for ${tokens.expires_in} s)`);

  const page = await client.listOffers({ limit: 50 });
  const offer = page.results.find((o) => o.code === "DATA-1GB") ?? page.results[0];
  if (!offer) throw new Error("no offers on sale");
  console.log(`${page.results.length} offers; buying ${offer.code} for ${offer.price} ${offer.currency}`);

  const accepted = await client.activate(offer.id, `ts-client-${Date.now()}`);
  console.log(`accepted: transaction ${accepted.transaction_id} ${accepted.status}`);
  const settled = await client.settled(accepted.transaction_id);
  console.log(`settled: ${settled.status}${settled.failure_reason ? ` (${settled.failure_reason})` : ""}`);
  if (settled.status !== "SUCCESS") throw new Error(`the activation ended ${settled.status}`);

  try {
    await client.listOffers({ limit: 201 });
    throw new Error("limit=201 was accepted");
  } catch (error) {
    if (!(error instanceof ProblemError) || error.problem.code !== "invalid_request") throw error;
    console.log(`limit=201 refused as documented: ${error.status} ${error.problem.code} (${error.problem.detail})`);
  }
  console.log("client flow: complete");
}

main().catch((error: unknown) => {
  console.error(`client flow failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
