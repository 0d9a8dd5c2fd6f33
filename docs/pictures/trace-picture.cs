// Screenshots a trace-viewer page made by Catapult's trace2html (the viewer behind chrome://tracing) in headless
// Chromium: flow arrows on, the first exit slice selected so that its arguments show. Run by trace-picture.sh.
#:package Microsoft.Playwright@1.64.1
#:property ManagePackageVersionsCentrally=false
#:property PublishAot=false
#:property JsonSerializerIsReflectionEnabledByDefault=true
using Microsoft.Playwright;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: dotnet run trace-picture.cs -- VIEWER.html OUT.png");
    return 64;
}

using IPlaywright playwright = await Playwright.CreateAsync();
await using IBrowser browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = "/usr/bin/chromium", Headless = true, Args = ["--no-sandbox"] });
IPage page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1200, Height = 560 } });
await page.GotoAsync(new Uri(Path.GetFullPath(args[0])).AbsoluteUri);
await page.GetByText("Flow events").WaitForAsync();
await page.WaitForTimeoutAsync(5000); // the viewer imports the trace after the page has loaded
await page.GetByText("Flow events").ClickAsync();
await page.GetByRole(AriaRole.Button, new() { Name = "All", Exact = true }).ClickAsync();
await page.Keyboard.PressAsync("Escape");
await page.Mouse.ClickAsync(470, 102); // the first exit slice on vCPU 0
await page.WaitForTimeoutAsync(1000);
await page.ScreenshotAsync(new() { Path = args[1] });
return 0;
