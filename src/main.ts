console.log("dnsgeo");
