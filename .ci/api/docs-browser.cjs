// The interactive docs as a person uses them, in Debian's headless Chromium
// driven by playwright-core: open /api/v1/docs/, authorize with a user's
// access token, run GET /api/v1/offers/ from the page, and see the offers in
// its answer. Every request outside the server under test is refused, so the
// page passes only if it works offline (its assets are in the binary).
//
// usage: node docs-browser.cjs BASE_URL TOKEN SCREENSHOT.png
const { chromium } = require("playwright-core");

const [base, token, screenshot] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const outside = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(base)) return route.continue();
      outside.push(url);
      return route.abort();
    });
    await page.goto(`${base}/api/v1/docs/`);
    await page.locator(".information-container .title", { hasText: "Offers API" }).waitFor();

    // Authorize: the user scheme (`bearer`) takes the token.
    await page.locator("button.authorize").first().click();
    const scheme = page.locator(".auth-container").filter({ has: page.locator("h4 code", { hasText: /^bearer$/ }) });
    await scheme.locator("input").fill(token);
    await scheme.locator("button.authorize").click();
    await scheme.locator("button.btn-done").click();

    // Try GET /api/v1/offers/ and execute it from the page.
    const operation = page.locator("#operations-offers-list_offers");
    await operation.locator(".opblock-summary").click();
    await operation.locator("button.try-out__btn").click();
    await operation.locator("button.execute").click();
    const answer = operation.locator(".live-responses-table tbody .response-col_status").first();
    await answer.waitFor();
    const status = (await answer.innerText()).trim();
    const body = await operation.locator(".live-responses-table tbody .response-col_description pre").first().innerText();
    if (status !== "200") throw new Error(`GET /api/v1/offers/ answered ${status} in the page: ${body.slice(0, 300)}`);
    const offers = JSON.parse(body).results;
    if (!offers.some((o) => o.code === "DATA-1GB")) throw new Error(`the answer lists no demo offers: ${body.slice(0, 300)}`);
    // The operation as executed: the request, the server's 200 and the offers.
    await operation.screenshot({ path: screenshot });
    if (outside.length) throw new Error(`the page asked for resources elsewhere: ${outside.join(", ")}`);
    console.log(`docs page: authorized, GET /api/v1/offers/ answered 200 with ${offers.length} offers; screenshot ${screenshot}`);
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`docs page: ${error.message}`);
  process.exit(1);
});
