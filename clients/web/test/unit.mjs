// Unit tests of the web client, offline, on Node's WebCrypto (node --test).
//
// Test data:
// - docs/FORMAT.md §9 worked examples and docs/PROTOCOL.md §8/§14 hex,
//   copied from those pages (this repository);
// - vectors/ (RFC 9180 HPKE vectors, Project Wycheproof), read in place; see
//   vectors/README.md for their provenance;
// - RFC 9106 §5.3 (Argon2id test vector), copied from the RFC.

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { argon2id } from '@noble/hashes/argon2.js';

import { bytesToBigInt, bigIntToBytes, bytesToUuid, concat, equalBytes, fromHex, randomBytes, randomUuid, toHex, utf8, uuidToBytes } from '../src/bytes.js';
import { CURVES, checkPoint, ecdsaVerify, isValidPoint, keyPairOfScalar } from '../src/ec.js';
import { aesGcmOpen, aesGcmSeal, hkdf } from '../src/kdf.js';
import {
  AEADS,
  BatchSealer,
  MODE,
  SUITES,
  decap,
  deriveKeyPair,
  deriveScalar,
  encap,
  keySchedule,
  openBatchGrant,
  openGrant,
  sealGrant,
  batchInfo,
  grantKeyContext,
  setupBaseS,
} from '../src/hpke.js';
import { parseEnvelope } from '../src/envelope.js';
import { deriveKek, unwrapPrivateKey, wrapPrivateKey } from '../src/kek.js';
import { RsaPrivateKey, RsaPublicKey, decryptOaepSha256Mgf1Sha1, mgf1 } from '../src/rsa.js';
import { parseRsaPkcs8 } from '../src/asn1.js';
import { checkKdfParams, deriveMasterSecret, loginAuthenticator } from '../src/auth.js';
import {
  decodeBody,
  encodeBody,
  encodeSignedBundle,
  parseBundle,
  signedMessageOfDigest,
  SIGNATURE_KIND,
} from '../src/bundle.js';
import { parsePackage, SUBJECT_KIND } from '../src/package.js';
import { buildBundle, checkTargets, OpenedGrants } from '../src/build.js';
import { migrateWithMasterSecret, RekeyApi } from '../src/client.js';
import { confirmRoles, parseRoleChecks, receiptMessage } from '../src/confirm.js';
import { RekeyError } from '../src/errors.js';
import { generateNewKey, newKeyOfBytes, signWithNewKey, verifyNewKeySignature } from '../src/keys.js';
import { isValidMlKem768Key, isValidPublicKey, kemPublicKey, TARGETS } from '../src/target.js';
import { deriveXWingSeed, xwingDecapsulate, xwingEncapsulate, xwingKeyPair } from '../src/xwing.js';
import { shake256 } from '@noble/hashes/sha3.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const vectors = (name) => JSON.parse(readFileSync(join(root, 'vectors', name), 'utf8'));
const h = (s) => fromHex(s.replace(/\s+/g, ''));
const subtle = globalThis.crypto.subtle;

// ---------------------------------------------------------------------------
// FORMAT §9 worked examples (docs/FORMAT.md).

const EX = {
  vault: h('000102030405060708090a0b0c0d0e0f'),
  recipient: h('101112131415161718191a1b1c1d1e1f'),
  record: h('202122232425262728292a2b2c2d2e2f'),
  keyPair: h('303132333435363738393a3b3c3d3e3f'),
  recordKey: h('404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f'),
  nonce: h('a0a1a2a3a4a5a6a7a8a9aaab'),
  recipientIkm: utf8('rekey worked example: recipient'),
  ephemeralIkm: utf8('rekey worked example: ephemeral'),
};

const FORMAT_P256 = {
  skR: 'b8428563ca8c5f580f3a99eb7cb906e338ff2b6571c18995fc4e64fa34276ccf',
  pkR: '041284b19680060e6b3fbfb226302b8439e3064c50a59088ab0e1b4a65ffaadbe029a174cc40d18f443ceadfe6baa89dd2ead93cdec67466afc45ba5ff11716805',
  skE: '3f5a9f7963ce28371082a68ea6e3583dd1086971628f6722b3e170001883a335',
  info10: '72656b65792f76312f6772616e7410000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f01202122232425262728292a2b2c2d2e2f',
  env10: '726b0110041f3bd7026e25cc1df00407f3f025bd6c53af59d43c022f24c908a7f07fb6bf6096bd7fc7d6b4f03c00631db089338c7f5fd16eeece1943c5b205a5d0a28a481e8062644f9a06319210d941617221fc2825de6912ff53796413b37b6335d23a8b4fb55d4b5112ee7844dd20aad7898b9a',
  info11: '72656b65792f76312f626174636811000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  exporter: 'f7d3b7ac56c21fef4f07f6d434dae593621351df18ee73792144784e10284ac7',
  context: '72656b65792f76312f6772616e742d6b657901202122232425262728292a2b2c2d2e2f',
  grantKey: '40c339796f558bb245c2722d544d2b15c43b31bb818cc9d66a6207372693b9ef',
  env11: '726b0111041f3bd7026e25cc1df00407f3f025bd6c53af59d43c022f24c908a7f07fb6bf6096bd7fc7d6b4f03c00631db089338c7f5fd16eeece1943c5b205a5d0a28a481ea0a1a2a3a4a5a6a7a8a9aaabcde3a621052bf64686d4bf74847e32b8c760089c72d9c7b5fc1b2dd75a19659117299302e2e37eaafbdb909c521c482d',
};

const FORMAT_P521 = {
  skR: '00bb2efde42ec23a63cc074875ceda81b9efe0b5b5ea361c7284fe3d638916fd14b2281cd4049a55b63af0b722d1b605eabc7d4f3c624db2c6a03fcbb17c2dd9455e',
  pkR: '04015dc3ac1f5ee40dce0e0ae66ca72ab1794f05d12dae53ef86d34392cb03f0da141cd35d45edf238946f45f54f623db3c988e86118822a1325597122f428bb944a22011e6f6e6e1ca8316e36eaa08e1eb0add4ab820810501a526ce167af18ce3f43437462a8bb5bd92f7aef44c2097f8799ef98bf00edf2db13bf3f14199faf68e87fed',
  skE: '00966642b48948d14a9e7fca8b7052b3a85e49c93274c950af64ddd23e126163639eabc32167fe17b80f0352abe75eced5bc827920e3ad1c145fddb5ab490185c7a7',
  info12: '72656b65792f76312f6772616e7412000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f01202122232425262728292a2b2c2d2e2f',
  env12: '726b0112040176a2d390105e70491997c14a624145d4b13635c99ef7abe83d2e911b0f3216c228123ce0bf3ca59d707aeb64ce9b91c473d75b6cfc2e800ccb4547c8dac6d0392b01b831113ba20a8f52f5751835dd77dac3d01085c0acab6423ea6cd5d49f0d321474f36a790bdc34a8c069e4b209023c50aabeef7faf1f528af3c3c8b119a4a2e42518d2feae28493d7461359f8ab443dbd46c2edff9cc3cbfbb91e87005f7455627d5a3454d04aa7602ef7baadb30b42f50',
  info13: '72656b65792f76312f626174636813000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  exporter: 'c45486ea163ce031edbda940c0d3f5c8b645e3d6226de7bd0565bb8b4c25d08f3088293e749974f621d6885ccc7552cf8c6a6905221fd0c112ff68ca52913c9d',
  grantKey: '1b362bc1797ae226ed4fda9b2474008bdab7d25bc510ae579346da8272757344',
  env13: '726b0113040176a2d390105e70491997c14a624145d4b13635c99ef7abe83d2e911b0f3216c228123ce0bf3ca59d707aeb64ce9b91c473d75b6cfc2e800ccb4547c8dac6d0392b01b831113ba20a8f52f5751835dd77dac3d01085c0acab6423ea6cd5d49f0d321474f36a790bdc34a8c069e4b209023c50aabeef7faf1f528af3c3c8b119a4a2e425a0a1a2a3a4a5a6a7a8a9aaab92f41219ce2e2e0656f3956829ff14844f6e26d29ead15c9a2e08045d97c7e89205bd8e0d6d161b34ccff05baa61b40e',
};

const FORMAT_RSA = {
  spki: '30820122300d06092a864886f70d01010105000382010f003082010a0282010100ce568c6aeac25cc0c3bf1c56d23870af4695a6c7e89f8aac898915b24000f8d7be4010da3cc4e16089c2448f9698aee230820e797e11293903d637ffdba511e382ab21e18501509a8ab6c8ecfc2eef08b88764eeabdf1f17fc26b02a2f27566fc471b8d7f570e00fd6ca12971a909bac1e86178aaf7f1c16ad0a6790a5e6d89a215b876bf89a0aa64f60ab442dde04b38c280f512bb0931b595c293b21bb95f2ca535a4aa65016e16deb2caf38702965b21abd7da6df752b69e7df37caa58699001a874a2b6b1ae59d7b0a5129b0f3e77ede9dba1a175b77d2bfdcfc6c462b699866ed721179cb5ed7c8724c3de7cd278b24d08e1085843b4fa83750db506e150203010001',
  envelope: '726b0102c56de9f82a7867f6745840519ca5ce8f7e6e9eba6ada467453c1071525d421de3cd95f413d612a2ec999f281f5b3cd7da409ae0316eaad51cd8d3bdcc3edbdab790ddc9fb363c4eaba3bafdd814850c1963556a9a3102c1c49262ef7d9aae30069987d3ccd49c1deaba49fa02e24f8ae3dd3beb10896c3471a120d7f6a53349bb00aa28caad5b3c9e84988cc3f340213d6743034c3a00d6cce45eadc41c229c449b5122556914cecf80cd78175f0f0b92f1174920990d773829d47e082b664d67c592abe500fd90101aedb8e4d4e7f6c14ae1d0cccf31efc72763a591a5be4f5282160686ba900dfc4ab9995c84668ffbd06a9d8285dba1e1d3ae41284960944',
  pkcs8: '308204be020100300d06092a864886f70d0101010500048204a8308204a40201000282010100ce568c6aeac25cc0c3bf1c56d23870af4695a6c7e89f8aac898915b24000f8d7be4010da3cc4e16089c2448f9698aee230820e797e11293903d637ffdba511e382ab21e18501509a8ab6c8ecfc2eef08b88764eeabdf1f17fc26b02a2f27566fc471b8d7f570e00fd6ca12971a909bac1e86178aaf7f1c16ad0a6790a5e6d89a215b876bf89a0aa64f60ab442dde04b38c280f512bb0931b595c293b21bb95f2ca535a4aa65016e16deb2caf38702965b21abd7da6df752b69e7df37caa58699001a874a2b6b1ae59d7b0a5129b0f3e77ede9dba1a175b77d2bfdcfc6c462b699866ed721179cb5ed7c8724c3de7cd278b24d08e1085843b4fa83750db506e150203010001028201001c24cbf44d5f035dbb95569d350143c5748037066f614b7deb288a900c90d5603fefe71c8d4b615e548bede413eb7177229caab2c1923fa82a30cee49425f8c1aa7203260a893a6049e952909879225b7327ec896d61fa90bff0daf876040c93241d4ad412033a5c8eb47342aef9e871da9bf99c0e01ed67de645be9ebe707c60757aa1214e96a76290e33ff814e77a13c9ba32a6142c0a8a60b8a95c26ed514cb62036f8828cddd3de2f7dc5f1207b2ed4d65e0568cf1521be3b365b26c952c7bb0e0e854470304a966ac9eaeeff8157d049b2893f964a9820b85fd76841f8dfab9dc9e0a7ebf92d912d4c547c92bdb043b3e18c4b27d19b2305f97b8e2c88102818100f371e753f78bf3eb8b51df031956819ac1a11e139d7e4b4c1e4c25e57f5fa61b48b00f905dab529202b9265d09875cce461487fb29f9ab4c6c80f39a7b124f18f2363a994a1bd6a69d5dc0ce27606f81c79d98ebfb7356d7aa4b3dc5ba478ce5fc2a321dfa1926d0ccdc7b0576cf1b7f958ed70b84b0208f2ead952f621dd0b502818100d8fabd48a204a09b904c2b3309e068715d04541253e27043a7a78cd9245522839c5cf5f8783b3457c9cfa893cbcef94c28ea3205fbdf768f5e60ab4095969b8fb9327e8b71b95d2bc59ff6d9c4946b275691499e4a1d660e8a155e7dacfea553bf4b9d2cc47240e77daf83b026d27b861b26f654ac54b8dde4f35d89e78e63e1028180750b3d721461784bb5f70de6ba86e9d712e338c7ab7fee09d1c340b11f55485273d71a1489c475f57753b74b21eaafc708d09434409126379f2f3c6ff85dec238d485f5215dc5e8e4ab8a99b34395c43244af41bf910121fac6372769f42094f05b6efd393cc05ea7ba4418d75facb38c31a22f009c27854fed73c13c4f39ac50281810087c68f7fcdf2bb55dd3beca4697fc59b7aab64b87b496d1ac8e4addc8b41c2f13c7d6765ee468e008946aaa4a19a88a1c1d09b30e765f458cea40b45c4d593cea20318f0c55f4b104300508600df27165cb359aff58ce3fa212a3210ce9a22767f741f8c8df938e822dc1bb9b4f16d5e83cb23c5e478b79e12d0bf2db67a81c1028181008cbb47c3029788c61057764d9ca05414b7062d20ea8562255d3f0b3fb4886d5d0b8250df16409362c4964614b9817d6fa9d5dc55e960716319c0badbccf803cf9fa32a17c8b5a9cc291866792e293ca1fbb55b1694d8e86fce7a9e04bf941996eb3763eb40e5efbbba83a4d83ca2fe8278144b5a1eab02e244b3c8f7e141c4e0',
};

// FORMAT §9: hybrid key pair (target hpke-mlkem768-x25519), ids 0x14, 0x15,
// 0x20 with a hybrid key, hybrid proof of possession.
const FORMAT_HYBRID = {
  seed: '0ee8ea0bbcd7e3042cf524c6cd9be110db131591d1823c49a7b145be26ca8d92',
  d: '8becb5a65ca42e878dbbdb1b3d137835946fc0867a0e7ce20f357cf946e176fa',
  z: '01a75b40d1f176fd3971b5cd79ac70eb432fbbbb612e5486c33e2f5d9d0f1e54',
  skX: '44fea002680955ed45f2cc756756353cdfceb9b992232b4b32869afc30e033cc',
  xwingPublicKey: '3fc09fbdda91aa5bcde4c620ead746c3a8056b0a8104b0aa45d0c6a2e113f1ba3277f73f2b27060ee587f154a24a1131f043b113958b174664bd606c7135b123fa0eb567cfedea4e3dec2e2e271c3b81b919965ad2b508ff807c0545ac24b9471f26488858a829cac77f800ded92cfa2e442b470c5c7731945a7129b702310199af1323cfd2cb933a429a4e82c3b546df45ac560355415ca893586bbd23c3b18ec1c11267026362ecc4998cfdc316b95941322397c19812371c3af16ae3ef81b8d60c818783ce5646b653cba6cba2db4d1155b7cb4ffe35bcb5b0c8f720628907e8a9761696787ee85912805035e560f05461b5e9824dad8ab533a6343f07ddfd138e3104a21336167104fb1627cd886336f8a4d8a3b6181c5a6f32a6cd9e0a2414b459dca9c3c4a0d19522db7a6a2bfca82eb927943a3a6ef42a4098488b6c3ad7484cf7db3a30bf1bad9c3bfe6bc12e6c9c9ecec949ea525d81512d3949574244e00d9629c3979f92601c9c35105896e7c57a43c420dc8e4106f75805a16720a5a9d87c4b717171b1de15aaf111c76f189561a2127575313da05dc516786563bb4f71d8f2c9944e1acd947460a65784765c0d94ccb632285afd89c709218c2f03c1ad95a26c62c4037568e52b19ae853a86917059a256fda93eb4a345e055307f17f49ea8acc800431932b6f541621f58f51bb6eaa229cea69805c22cd0727b5ee332797c7748b949df87b289cc583cd71c104d189d0a6c4f4d4bf81eb83efeb62bcbc93ee5682c75c6e9c9a7058a9c16ba2bdf9207aa96b9b3a94b50864898661243dd3cc3c28a0a3773a7bdcb617e13256fbc08bb0a94db84671803ca0ca1777b222417b6e0db1a04e7613580783f2f6556083c2f5d22bbea03678f69533827b95b592dc267c494c29eb40034414141fbab89e770ec128bc5ac7a93b7346cd66030e0341030c6a6dbb6291056b0374bffac7a48ba48d862b8884d59967f284e5a0770337ce8b644e9b94c91583ab0dd245a4126ab98a2b417a1ae7bb1898283da0a0157f039796548a22e759b412877b2b865b847013a55ae604845801bc8b8656d2533b45443ab858ba1b384a4d283e09125476f7bff0f771d78b351eea2f9ad49d32b42d9d764a804111d0b47c75735c926c8a73a033043403f9b6a7f03ac5471334b2e95989b89dc8a5b65443c34748be1df6813531cd72f478fd4bca757acb2db119314c090ba13d1ab9c726d95919f01f36d3baf7557d7ac5ca15a2c33c4902c6107556a3b0a8ba812b1c1f22519eab90a7e36530289861b7f99582a54da4870df0b2a3eb633c3df4b8cfd899373b016fa584f7989dc32c0b2155804d944a07fab2ad4353b4aab7515b5fedbb568048137392a2ea5a8a03d02a8c8186e6d971824a2b08a826434619a4645b0b7bc8d4315a3b97374f517017a8699a314afb0c973cabaaaa007ac8ba66888521008dbc1e208f54796e650728374499ae55301d6bce3d37cd71145d351925e3a0ad7ab50b8e5c437c451ee9b27eafc8b1d0d569d970764019a53875083ba640d8ca0a3dda63e3ea2763cb079ce46ba69809f139575a954e6cbc7d26875c9046595bbb90d0406ea7cc9ad75834e52a2ca3db3bb79bc622bc3cf5ed49404034201a263fb3e24a770a1d8591c2070994fe766ff3c2cafd04bc1be1593689c99f5a84a14129c4f8a83c710c50665197e907',
  scalar: 'b8428563ca8c5f580f3a99eb7cb906e338ff2b6571c18995fc4e64fa34276ccf',
  point: '041284b19680060e6b3fbfb226302b8439e3064c50a59088ab0e1b4a65ffaadbe029a174cc40d18f443ceadfe6baa89dd2ead93cdec67466afc45ba5ff11716805',
  privateKey: '0ee8ea0bbcd7e3042cf524c6cd9be110db131591d1823c49a7b145be26ca8d92b8428563ca8c5f580f3a99eb7cb906e338ff2b6571c18995fc4e64fa34276ccf',
  fingerprint: 'a730d00dfa5a00d13a965ef6e47cd6e39cc9dab6eade58f625aff361b8869ed4',
  randomnessM: 'b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf',
  randomnessX: 'd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef',
  ssM: '78f019050aff52cc4cf01d73c4222c11df6acf11bfc69be8cbb2a5afb3ca62b2',
  ctX: '6b3ee67463583cbe3dc08fe9d0765c2666ff5210dd527c9d8705e44927c80d55',
  ssX: '3c6a0ddab32f748cfe8675d87259f0ba480195da86c1e9248accc8b14ff90847',
  sharedSecret: '47b1db696845415a013ecbb9680570ca8ca2338ebea314b8e682a5ed7a303228',
  enc: 'c38e783021018b9924954512bd27fd351c3c4bc10bdf7d70879d4153c3d7409512b61010f9c4d6400394625142c9e528760f9fd4f53f86b809209184214882fd8b49188d754705bfd1146ba49d6dab84294a2eb60be472c3d2b12ff3941c515e48812605b2d7d681b69b7028543b861129045a3af415098ba99677b60d70eb92beff960ca325e9d60db306fbb30838616e561c484e47e10cdd8623ca90bfd5205e914f88040823271e21e462daa8b00788dc9553465825ba70a1fca920bba06bbf8fd0fa60c1af75f7ba0e14741ad4e3b231c53dca9feea91017ca1eca5c47bdc736b383ddd89759b732a39f868f0fa36c8c4f2c2fec33cbcaacec252ba7be03a69e96b30d462a83d9d118fb9199e8347f92042f052340077b69bfc1db8091b4552dec219a440afbb922517d336fd0906871b5a12fd38dbc91686fc41991773426c8e471534114c5f216ab69b46484c282b12ee18b6e74c82f9c3935cfcfe9f0ae84dc2929b2b175c2068ee21104aa0e9b1fdf6e24560bc7b28f7727cbb14f0d051ad97ce32fdf3de1c32cbd108d567679372d8a28d011d10847da83edbc959620a92f4d94fed450c185426553a03777499427ff84d9777ee6c7e935d7ff941ef71e7dfa0ad3b62acf40aaf7f671d820b5818e16d4c9695ff3e27cfc13fe11a42ba17b9352a6c135156de66b543cb284518f297cb3beea38a1582370f3229aeebde178b5b7008e69088c6b987c2aed9ea394f5600d933435480a0fc26960feb3937f6b54d68a2cb96c6c9f4add2c49c6757aec692fe75137a3fe4437878697b6a429c25b6b53665618f532d4531208d34cd7ac6a8c24f83e46be2662ab6b90715b3a517542df973e90831399be8d241390f92c56fcd927435e89777ba2d5d5534321523e67adb05b4ec4f7c627dac2067870c2d4a4c9552d3a8932ae90e302492f58ee9acd9c313b51ac82a189d44c51c48cf3a07a13c582bd451653ccd636b62005cd4a4647fb63aa98cb6b9662391cc4b656f0d8eb19faa4f0c925893a32d2c1f0ba61b8ff0dcba94084add317e1b1800c84bd335787e8a86b128c51e9c831eb3af5b5e033e6251c08b18b6b9a1fedc7b97ade138e0648dee04797f53a66ea6597b77b4b971af11675bf65957ca351f3c6b28c9090355a95e53a6a82ed73c3cabea8a1dedac06669d08b8821e8570759d2ee26a568495a17b3d0354c6ef1d8ab5e3030fd58bf05d2bc033950cc8f4a3b058983f4014c465eabdba7ab22c9e00ff6b51489e1bd74b0bfa5b3774df1d83bbf98da9b4e9b184f81f3f7d6c51598e2698cbc556c34005666a172b861425b4f38678cfcce10d459156b49fa4e43d01322745f216fb90f9ca25c4e7412759dd14ccad252053b400f98cad50d5b610a5effbe32e3a9f4e9b7c982885bca8389c05db353fc915a51b9e0646f5ac73c4ec7cf6db937a895577ae56714d40a58234e61f607d57db27777c8b389639984aafb9c48faa5fd1d35d049d82b8b97bbe66546d40522347f49d29e09d5c176867d6b3ee67463583cbe3dc08fe9d0765c2666ff5210dd527c9d8705e44927c80d55',
  info14: '72656b65792f76312f6772616e7414000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f01202122232425262728292a2b2c2d2e2f',
  key14: 'b6755a2433aa883fb68e9cceaddb3c4883d34419d30c97b0a61ab156dff85136',
  baseNonce14: '93a717f9de1bd511ae0e7c42',
  env14: '726b0114c38e783021018b9924954512bd27fd351c3c4bc10bdf7d70879d4153c3d7409512b61010f9c4d6400394625142c9e528760f9fd4f53f86b809209184214882fd8b49188d754705bfd1146ba49d6dab84294a2eb60be472c3d2b12ff3941c515e48812605b2d7d681b69b7028543b861129045a3af415098ba99677b60d70eb92beff960ca325e9d60db306fbb30838616e561c484e47e10cdd8623ca90bfd5205e914f88040823271e21e462daa8b00788dc9553465825ba70a1fca920bba06bbf8fd0fa60c1af75f7ba0e14741ad4e3b231c53dca9feea91017ca1eca5c47bdc736b383ddd89759b732a39f868f0fa36c8c4f2c2fec33cbcaacec252ba7be03a69e96b30d462a83d9d118fb9199e8347f92042f052340077b69bfc1db8091b4552dec219a440afbb922517d336fd0906871b5a12fd38dbc91686fc41991773426c8e471534114c5f216ab69b46484c282b12ee18b6e74c82f9c3935cfcfe9f0ae84dc2929b2b175c2068ee21104aa0e9b1fdf6e24560bc7b28f7727cbb14f0d051ad97ce32fdf3de1c32cbd108d567679372d8a28d011d10847da83edbc959620a92f4d94fed450c185426553a03777499427ff84d9777ee6c7e935d7ff941ef71e7dfa0ad3b62acf40aaf7f671d820b5818e16d4c9695ff3e27cfc13fe11a42ba17b9352a6c135156de66b543cb284518f297cb3beea38a1582370f3229aeebde178b5b7008e69088c6b987c2aed9ea394f5600d933435480a0fc26960feb3937f6b54d68a2cb96c6c9f4add2c49c6757aec692fe75137a3fe4437878697b6a429c25b6b53665618f532d4531208d34cd7ac6a8c24f83e46be2662ab6b90715b3a517542df973e90831399be8d241390f92c56fcd927435e89777ba2d5d5534321523e67adb05b4ec4f7c627dac2067870c2d4a4c9552d3a8932ae90e302492f58ee9acd9c313b51ac82a189d44c51c48cf3a07a13c582bd451653ccd636b62005cd4a4647fb63aa98cb6b9662391cc4b656f0d8eb19faa4f0c925893a32d2c1f0ba61b8ff0dcba94084add317e1b1800c84bd335787e8a86b128c51e9c831eb3af5b5e033e6251c08b18b6b9a1fedc7b97ade138e0648dee04797f53a66ea6597b77b4b971af11675bf65957ca351f3c6b28c9090355a95e53a6a82ed73c3cabea8a1dedac06669d08b8821e8570759d2ee26a568495a17b3d0354c6ef1d8ab5e3030fd58bf05d2bc033950cc8f4a3b058983f4014c465eabdba7ab22c9e00ff6b51489e1bd74b0bfa5b3774df1d83bbf98da9b4e9b184f81f3f7d6c51598e2698cbc556c34005666a172b861425b4f38678cfcce10d459156b49fa4e43d01322745f216fb90f9ca25c4e7412759dd14ccad252053b400f98cad50d5b610a5effbe32e3a9f4e9b7c982885bca8389c05db353fc915a51b9e0646f5ac73c4ec7cf6db937a895577ae56714d40a58234e61f607d57db27777c8b389639984aafb9c48faa5fd1d35d049d82b8b97bbe66546d40522347f49d29e09d5c176867d6b3ee67463583cbe3dc08fe9d0765c2666ff5210dd527c9d8705e44927c80d55bcf2fe4194e5d64df1a6a6745f184d3e2b7351e78403ce8dadcb887309f689c73ee0ef200def0199338e4fd9179bf612',
  info15: '72656b65792f76312f626174636815000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  exporter: 'dc976e12d1df34685dcd07edbc6f530a3dcb35a42c18eb8e12ed9b4eefc38eda',
  grantKey: '2494198b1e493b1b66ddf2a47377ab9ffc1bc5ab6b158b0b844e8b479f8f0b02',
  env15: '726b0115c38e783021018b9924954512bd27fd351c3c4bc10bdf7d70879d4153c3d7409512b61010f9c4d6400394625142c9e528760f9fd4f53f86b809209184214882fd8b49188d754705bfd1146ba49d6dab84294a2eb60be472c3d2b12ff3941c515e48812605b2d7d681b69b7028543b861129045a3af415098ba99677b60d70eb92beff960ca325e9d60db306fbb30838616e561c484e47e10cdd8623ca90bfd5205e914f88040823271e21e462daa8b00788dc9553465825ba70a1fca920bba06bbf8fd0fa60c1af75f7ba0e14741ad4e3b231c53dca9feea91017ca1eca5c47bdc736b383ddd89759b732a39f868f0fa36c8c4f2c2fec33cbcaacec252ba7be03a69e96b30d462a83d9d118fb9199e8347f92042f052340077b69bfc1db8091b4552dec219a440afbb922517d336fd0906871b5a12fd38dbc91686fc41991773426c8e471534114c5f216ab69b46484c282b12ee18b6e74c82f9c3935cfcfe9f0ae84dc2929b2b175c2068ee21104aa0e9b1fdf6e24560bc7b28f7727cbb14f0d051ad97ce32fdf3de1c32cbd108d567679372d8a28d011d10847da83edbc959620a92f4d94fed450c185426553a03777499427ff84d9777ee6c7e935d7ff941ef71e7dfa0ad3b62acf40aaf7f671d820b5818e16d4c9695ff3e27cfc13fe11a42ba17b9352a6c135156de66b543cb284518f297cb3beea38a1582370f3229aeebde178b5b7008e69088c6b987c2aed9ea394f5600d933435480a0fc26960feb3937f6b54d68a2cb96c6c9f4add2c49c6757aec692fe75137a3fe4437878697b6a429c25b6b53665618f532d4531208d34cd7ac6a8c24f83e46be2662ab6b90715b3a517542df973e90831399be8d241390f92c56fcd927435e89777ba2d5d5534321523e67adb05b4ec4f7c627dac2067870c2d4a4c9552d3a8932ae90e302492f58ee9acd9c313b51ac82a189d44c51c48cf3a07a13c582bd451653ccd636b62005cd4a4647fb63aa98cb6b9662391cc4b656f0d8eb19faa4f0c925893a32d2c1f0ba61b8ff0dcba94084add317e1b1800c84bd335787e8a86b128c51e9c831eb3af5b5e033e6251c08b18b6b9a1fedc7b97ade138e0648dee04797f53a66ea6597b77b4b971af11675bf65957ca351f3c6b28c9090355a95e53a6a82ed73c3cabea8a1dedac06669d08b8821e8570759d2ee26a568495a17b3d0354c6ef1d8ab5e3030fd58bf05d2bc033950cc8f4a3b058983f4014c465eabdba7ab22c9e00ff6b51489e1bd74b0bfa5b3774df1d83bbf98da9b4e9b184f81f3f7d6c51598e2698cbc556c34005666a172b861425b4f38678cfcce10d459156b49fa4e43d01322745f216fb90f9ca25c4e7412759dd14ccad252053b400f98cad50d5b610a5effbe32e3a9f4e9b7c982885bca8389c05db353fc915a51b9e0646f5ac73c4ec7cf6db937a895577ae56714d40a58234e61f607d57db27777c8b389639984aafb9c48faa5fd1d35d049d82b8b97bbe66546d40522347f49d29e09d5c176867d6b3ee67463583cbe3dc08fe9d0765c2666ff5210dd527c9d8705e44927c80d55a0a1a2a3a4a5a6a7a8a9aaab7e50ff2dc0bce690c3079d87024c02909ef479e026e7de40b8a51b316becd2705dbf85cbe0179cdb19ab398b2995c7f5',
  env20: '726b0120a0a1a2a3a4a5a6a7a8a9aaabb2004e43ad69522701ba89747448e9260e176675a9d0fded411a57521d8dabe4ead1042a2fbf629932b20603be66c28f976d34b83bf6292052c8bf4afbd3712d6ed839424f60a67107f09abf32d5b820',
  popPrefix: '72656b65792f76312f6879627269642d6b65792d706f7373657373696f6e000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f303132333435363738393a3b3c3d3e3f',
  popSignature: '7e40b8d6f3b8d9d282aef1d3bb9238373f5c431acedbbdc1902cb4c9b1aac7b68f15aa4549bd811b21d8bc68e2a5e95f5720891b14e1030242982ebb93bee626',
};

async function formatSuite(suite, ex) {
  const skR = await deriveScalar(suite, EX.recipientIkm);
  assert.equal(toHex(skR), ex.skR, 'DeriveKeyPair(recipient ikm)');
  const recipient = await keyPairOfScalar(suite.curve, skR, 'ECDH');
  assert.equal(toHex(recipient.publicPoint), ex.pkR);
  const skE = await deriveScalar(suite, EX.ephemeralIkm);
  assert.equal(toHex(skE), ex.skE, 'DeriveKeyPair(ephemeral ikm)');
  const ephemeral = await keyPairOfScalar(suite.curve, skE, 'ECDH');
  return { recipient, ephemeral };
}

describe('FORMAT §9 worked examples', () => {
  for (const [name, suite, ex, single, batch] of [
    ['P-256', SUITES.p256, FORMAT_P256, 0x10, 0x11],
    ['P-521', SUITES.p521, FORMAT_P521, 0x12, 0x13],
  ]) {
    test(`${name}: keys from ikm, single grant (0x${single.toString(16)}) sealed and opened`, async () => {
      const { recipient, ephemeral } = await formatSuite(suite, ex);
      const env = await sealGrant(single, recipient.publicPoint, EX.vault, EX.recipient, 1, EX.record, EX.recordKey, {
        ephemeral,
      });
      assert.equal(toHex(env), ex[`env${single.toString(16)}`]);
      const info = ex[`info${single.toString(16)}`];
      assert.equal(toHex(concat(utf8('rekey/v1/grant'), Uint8Array.of(single), EX.vault, EX.recipient, Uint8Array.of(1), EX.record)), info);
      const opened = await openGrant(parseEnvelope(env), recipient, EX.vault, EX.recipient, 1, EX.record);
      assert.deepEqual(opened, EX.recordKey);
      // Bound to its place: another subject does not open it.
      await assert.rejects(openGrant(parseEnvelope(env), recipient, EX.vault, EX.recipient, 2, EX.record));
    });

    test(`${name}: batch grant (0x${batch.toString(16)}): info, exporter secret, grant key, envelope`, async () => {
      const { recipient, ephemeral } = await formatSuite(suite, ex);
      const info = batchInfo(batch, EX.vault, EX.recipient);
      assert.equal(toHex(info), ex[`info${batch.toString(16)}`]);
      const { ctx } = await setupBaseS(suite, recipient.publicPoint, info, { ephemeral });
      assert.equal(toHex(ctx.exporterSecret), ex.exporter);
      assert.equal(toHex(grantKeyContext(1, EX.record)), FORMAT_P256.context);
      assert.equal(toHex(await ctx.export(grantKeyContext(1, EX.record), 32)), ex.grantKey);
      const curve = suite.curve;
      const sealer = await BatchSealer.create(curve, recipient.publicPoint, EX.vault, EX.recipient, {
        ephemeral,
        nonces: () => EX.nonce,
      });
      const env = await sealer.seal(1, EX.record, EX.recordKey);
      assert.equal(toHex(env), ex[`env${batch.toString(16)}`]);
      const opened = await openBatchGrant(parseEnvelope(env), recipient, EX.vault, EX.recipient, 1, EX.record);
      assert.deepEqual(opened, EX.recordKey);
    });
  }

  test('aes256gcm-kek (0x20): KEK and wrapped P-256 scalar', async () => {
    const master = utf8('rekey worked example: master secret');
    const kek = await deriveKek(master, EX.vault, EX.recipient);
    assert.equal(toHex(kek), 'cceddc61f2f1c85f740d180e66ea62c6de48837ac02d5c86380129c1d663eab6');
    const env = await wrapPrivateKey(kek, EX.vault, EX.recipient, EX.keyPair, h(FORMAT_P256.skR), { nonce: EX.nonce });
    assert.equal(
      toHex(env),
      '726b0120a0a1a2a3a4a5a6a7a8a9aaab04aa212bdb32ee7b22753459c56a0ed5edfb5881099348311ae576160f604ab905b4d731c16d7f2dab8840f901517a45',
    );
    assert.equal(toHex(await unwrapPrivateKey(kek, EX.vault, EX.recipient, EX.keyPair, env)), FORMAT_P256.skR);
    await assert.rejects(unwrapPrivateKey(kek, EX.vault, EX.recipient, EX.record, env), { code: 'wrong_key' });
  });

  test('record content', async () => {
    const aad = concat(utf8('rekey/v1/record'), Uint8Array.of(1), EX.vault, EX.record);
    assert.equal(toHex(aad), '72656b65792f76312f7265636f726401000102030405060708090a0b0c0d0e0f202122232425262728292a2b2c2d2e2f');
    const ct = await aesGcmSeal(EX.recordKey, EX.nonce, aad, utf8('correct horse battery staple'));
    assert.equal(
      toHex(concat(Uint8Array.of(1), EX.nonce, ct)),
      '01a0a1a2a3a4a5a6a7a8a9aaabb4e0744d8788e80d1100338dec9c52979b6390b5954ff65983ac82ff5f3516d9e4095177c24b798d8b714788',
    );
  });

  test('ECDSA P-256 signature (r ‖ s) verifies', async () => {
    const sig = h('fb68ecfaaf5ac2a772a3cd7441a365b72f5b369a381efb562a16c19b922cda53186985533f500660d142a8a45c42ce8d5d009e38895f73e106b74bc4b8792b83');
    const pk = h(FORMAT_P256.pkR);
    assert.ok(await ecdsaVerify(CURVES.p256, pk, utf8('rekey worked example: signed bytes'), sig));
    assert.ok(!(await ecdsaVerify(CURVES.p256, pk, utf8('rekey worked example: signed byteS'), sig)));
  });

  test('rsa-oaep-sha256 (0x02) legacy envelope opens to the record key', async () => {
    const key = await RsaPrivateKey.fromPkcs8(h(FORMAT_RSA.pkcs8));
    const pub = new RsaPublicKey(h(FORMAT_RSA.spki));
    assert.ok(pub.matches(key));
    assert.equal(pub.bits, 2048);
    const env = parseEnvelope(h(FORMAT_RSA.envelope));
    assert.equal(env.scheme, 0x02);
    assert.deepEqual(await key.decrypt(env.scheme, env.ciphertext), EX.recordKey);
    await assert.rejects(key.decrypt(0x01, env.ciphertext), { code: 'could_not_decrypt' });
    await assert.rejects(key.decrypt(0x03, env.ciphertext), { code: 'could_not_decrypt' });
  });
});

// ---------------------------------------------------------------------------
// RFC 9180 vectors (vectors/hpke_p256.json, vectors/hpke_p521.json).

for (const [file, suite] of [
  ['hpke_p256.json', SUITES.p256],
  ['hpke_p521.json', SUITES.p521],
]) {
  describe(`RFC 9180 vectors: ${file}`, () => {
    for (const v of vectors(file)) {
      test(`mode ${v.mode}, aead ${v.aead_id}`, async () => {
        assert.equal(v.kem_id, suite.kemId);
        assert.equal(v.kdf_id, suite.kdfId);
        const aead = AEADS[v.aead_id];
        assert.equal(toHex(await deriveScalar(suite, h(v.ikmR))), v.skRm);
        assert.equal(toHex(await deriveScalar(suite, h(v.ikmE))), v.skEm);
        const recipient = await keyPairOfScalar(suite.curve, h(v.skRm), 'ECDH');
        assert.equal(toHex(recipient.publicPoint), v.pkRm);
        const ephemeral = await keyPairOfScalar(suite.curve, h(v.skEm), 'ECDH');
        assert.equal(toHex(ephemeral.publicPoint), v.pkEm);
        let sender;
        let pkS;
        if (v.mode === MODE.auth || v.mode === MODE.authPsk) {
          assert.equal(toHex(await deriveScalar(suite, h(v.ikmS))), v.skSm);
          sender = await keyPairOfScalar(suite.curve, h(v.skSm), 'ECDH');
          assert.equal(toHex(sender.publicPoint), v.pkSm);
          pkS = sender.publicPoint;
        }
        const { sharedSecret, enc } = await encap(suite, recipient.publicPoint, { ephemeral, sender });
        assert.equal(toHex(enc), v.enc);
        assert.equal(toHex(sharedSecret), v.shared_secret);
        assert.equal(toHex(await decap(suite, enc, recipient, { pkS })), v.shared_secret);
        const psk = v.psk ? h(v.psk) : new Uint8Array(0);
        const pskId = v.psk_id ? h(v.psk_id) : new Uint8Array(0);
        const sealer = await keySchedule(suite, aead, v.mode, sharedSecret, h(v.info), psk, pskId);
        const opener = await keySchedule(suite, aead, v.mode, sharedSecret, h(v.info), psk, pskId);
        assert.equal(toHex(sealer.key), v.key);
        assert.equal(toHex(sealer.baseNonce), v.base_nonce);
        assert.equal(toHex(sealer.exporterSecret), v.exporter_secret);
        for (const [seq, e] of v.encryptions.entries()) {
          assert.equal(toHex(sealer.nonce()), e.nonce, `nonce ${seq}`);
          assert.equal(toHex(await sealer.seal(h(e.aad), h(e.pt))), e.ct, `ct ${seq}`);
          assert.equal(toHex(await opener.open(h(e.aad), h(e.ct))), e.pt, `pt ${seq}`);
        }
        for (const x of v.exports) {
          assert.equal(toHex(await sealer.export(h(x.exporter_context), x.L)), x.exported_value);
        }
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Wycheproof (vectors/wycheproof).

describe('Wycheproof', () => {
  for (const [file, scheme] of [
    ['rsa_oaep_2048_sha1_mgf1sha1_test.json', 0x01],
    ['rsa_oaep_2048_sha256_mgf1sha256_test.json', 0x02],
    ['rsa_oaep_2048_sha256_mgf1sha1_test.json', 0x03],
  ]) {
    test(`${file} as scheme 0${scheme}`, async () => {
      const data = vectors(join('wycheproof', file));
      let ran = 0;
      for (const g of data.testGroups) {
        const key = await RsaPrivateKey.fromPkcs8(h(g.privateKeyPkcs8));
        for (const t of g.tests) {
          if (t.label !== '') continue; // rekey's grants use the empty label
          ran++;
          const ct = h(t.ct);
          if (t.result === 'valid') {
            assert.equal(toHex(await key.decrypt(scheme, ct)), t.msg, `tcId ${t.tcId}`);
          } else {
            await assert.rejects(key.decrypt(scheme, ct), { code: 'could_not_decrypt' }, `tcId ${t.tcId}`);
          }
        }
      }
      assert.ok(ran > 10);
    });
  }

  test('scheme 03 decoding refuses every other variant\'s ciphertexts', async () => {
    const data = vectors('wycheproof/rsa_oaep_2048_sha256_mgf1sha256_test.json');
    const g = data.testGroups[0];
    const parsed = parseRsaPkcs8(h(g.privateKeyPkcs8));
    for (const t of g.tests.filter((x) => x.label === '' && x.result === 'valid')) {
      await assert.rejects(decryptOaepSha256Mgf1Sha1(parsed.private, parsed.modulusLength, h(t.ct)), {
        code: 'could_not_decrypt',
      });
    }
  });

  test('ecdh_secp256r1_ecpoint_test.json: points checked, shared secrets equal', async () => {
    const data = vectors('wycheproof/ecdh_secp256r1_ecpoint_test.json');
    let checked = 0;
    for (const t of data.testGroups[0].tests) {
      const pub = h(t.public);
      const valid = isValidPoint(CURVES.p256, pub);
      if (t.result === 'invalid') {
        assert.equal(valid, false, `tcId ${t.tcId} ${t.comment}`);
        continue;
      }
      if (pub.length !== 65) continue; // compressed: rekey uses uncompressed points only
      assert.equal(valid, true, `tcId ${t.tcId}`);
      let priv = h(t.private);
      if (priv.length > 32) priv = priv.subarray(priv.length - 32);
      if (priv.length < 32) priv = concat(new Uint8Array(32 - priv.length), priv);
      const me = await keyPairOfScalar(CURVES.p256, priv, 'ECDH');
      const peer = await subtle.importKey('raw', pub, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
      const shared = new Uint8Array(await subtle.deriveBits({ name: 'ECDH', public: peer }, me.privateKey, 256));
      assert.equal(toHex(shared), t.shared, `tcId ${t.tcId}`);
      checked++;
    }
    assert.ok(checked > 300);
  });

  test('hkdf_sha256_test.json', async () => {
    const data = vectors('wycheproof/hkdf_sha256_test.json');
    for (const g of data.testGroups) {
      for (const t of g.tests.filter((x) => x.result === 'valid' && x.ikm !== '')) {
        assert.equal(toHex(await hkdf('SHA-256', h(t.salt), h(t.ikm), h(t.info), t.size)), t.okm, `tcId ${t.tcId}`);
      }
    }
  });

  test('aes_gcm_test.json (96-bit nonces, 128-bit tags)', async () => {
    const data = vectors('wycheproof/aes_gcm_test.json');
    for (const g of data.testGroups.filter((x) => x.ivSize === 96 && x.tagSize === 128 && x.keySize !== 192)) {
      for (const t of g.tests) {
        const ct = concat(h(t.ct), h(t.tag));
        if (t.result === 'valid') {
          assert.equal(toHex(await aesGcmOpen(h(t.key), h(t.iv), h(t.aad), ct)), t.msg, `tcId ${t.tcId}`);
          assert.equal(toHex(await aesGcmSeal(h(t.key), h(t.iv), h(t.aad), h(t.msg))), toHex(ct), `tcId ${t.tcId}`);
        } else {
          await assert.rejects(aesGcmOpen(h(t.key), h(t.iv), h(t.aad), ct), `tcId ${t.tcId}`);
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------
// Login: Argon2id and the authenticator.

describe('login', () => {
  test('Argon2id: RFC 9106 §5.3 test vector (through @noble/hashes)', () => {
    const out = argon2id(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), {
      t: 3,
      m: 32,
      p: 4,
      dkLen: 32,
      key: new Uint8Array(8).fill(3),
      personalization: new Uint8Array(12).fill(4),
    });
    assert.equal(toHex(out), '0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659');
  });

  test('demo master secret: the salt and parameters of the login', async () => {
    const vault = randomBytes(16);
    const user = randomBytes(16);
    const params = { algorithm: 'argon2id', m_kib: 1024, t: 1, p: 1 };
    const master = await deriveMasterSecret('pässword', vault, user, params);
    const expected = argon2id(utf8('pässword'), concat(utf8('rekey-demo'), vault, user), { m: 1024, t: 1, p: 1, dkLen: 32 });
    assert.deepEqual(master, expected);
    const auth = await loginAuthenticator(master, vault, user);
    const manual = await hkdf('SHA-256', utf8('rekey/v1/login-authenticator'), master, concat(vault, user), 32);
    assert.deepEqual(auth, manual);
    assert.notDeepEqual(auth, await deriveKek(master, vault, user), 'the authenticator is not the KEK');
  });

  test('the vault\'s KDF parameters are checked', () => {
    const ok = { algorithm: 'argon2id', m_kib: 4096, t: 1, p: 1 };
    assert.deepEqual(checkKdfParams(ok), ok);
    for (const bad of [
      { ...ok, m_kib: 1023 },
      { ...ok, m_kib: 1048577 },
      { ...ok, t: 0 },
      { ...ok, t: 11 },
      { ...ok, p: 0 },
      { ...ok, p: 5 },
      { ...ok, t: 1.5 },
      { ...ok, algorithm: 'scrypt' },
      { ...ok, extra: 1 },
      null,
      [],
    ]) {
      assert.throws(() => checkKdfParams(bad), { code: 'bad_kdf_params' }, JSON.stringify(bad));
    }
  });
});

// ---------------------------------------------------------------------------
// Envelopes (FORMAT §1).

describe('envelope parsing', () => {
  const env = (scheme, bodyLen) => concat(Uint8Array.of(0x72, 0x6b, 0x01, scheme), new Uint8Array(bodyLen));
  test('accepts each scheme at its bounds', () => {
    for (const [scheme, min, max] of [
      [0x01, 128, 1024],
      [0x02, 128, 1024],
      [0x03, 128, 1024],
      [0x10, 81, 81 + 8192],
      [0x11, 93, 93 + 8192],
      [0x12, 149, 149 + 8192],
      [0x13, 161, 161 + 8192],
      [0x14, 1136, 1136 + 8192],
      [0x15, 1148, 1148 + 8192],
      [0x20, 28, 28 + 8192],
    ]) {
      assert.equal(parseEnvelope(env(scheme, min)).scheme, scheme);
      assert.equal(parseEnvelope(env(scheme, max)).scheme, scheme);
      assert.throws(() => parseEnvelope(env(scheme, min - 1)), { code: 'bad_envelope' }, `${scheme} min-1`);
      assert.throws(() => parseEnvelope(env(scheme, max + 1)), { code: 'bad_envelope' }, `${scheme} max+1`);
    }
  });
  test('refuses short input, wrong magic, version, unknown schemes', () => {
    for (const bad of [
      new Uint8Array(0),
      Uint8Array.of(0x72, 0x6b, 0x01),
      concat(Uint8Array.of(0x72, 0x6c, 0x01, 0x02), new Uint8Array(256)),
      concat(Uint8Array.of(0x52, 0x6b, 0x01, 0x02), new Uint8Array(256)),
      concat(Uint8Array.of(0x72, 0x6b, 0x02, 0x02), new Uint8Array(256)),
      concat(Uint8Array.of(0x72, 0x6b, 0x00, 0x02), new Uint8Array(256)),
      env(0x00, 256),
      env(0x04, 256),
      env(0x16, 2000),
      env(0x21, 60),
      env(0xff, 256),
    ]) {
      assert.throws(() => parseEnvelope(bad), { code: 'bad_envelope' }, toHex(bad.subarray(0, 4)));
    }
  });
  test('splits enc, nonce and ciphertext', () => {
    const e = parseEnvelope(h(FORMAT_P256.env11));
    assert.equal(e.enc.length, 65);
    assert.equal(toHex(e.nonce), toHex(EX.nonce));
    assert.equal(e.ciphertext.length, 48);
  });
});

// ---------------------------------------------------------------------------
// PROTOCOL §14 "A real bundle, annotated" and the §8 message.
//
// The page elides the grant envelopes after their first bytes, 18 of the 19
// grants and the RSA-PSS signature; those bytes are filled in here. Every
// byte the page shows is placed at the offset it gives, the bundle is parsed
// and re-encoded byte for byte, and the ECDSA signature it shows is checked
// against the §8 message built from the body digest §8 gives.

const P14 = {
  vault: '9a3744504560439e8670b7a17d492b27',
  run: '147ffc7351504a5d87005c4cf26120c8',
  principal: '0cafcb15e70b4d77bbb080de7fac163f',
  legacyKeyPair: '1e39c264a85e4f84b588adc429796243',
  newKeyPair: 'f8e5b594736246d894910d6492f090a1',
  publicKey:
    '04d37c12e516ad94b7f6d634d75fa8f5bb96472f708bdc3363459a0dd445858b7d' +
    'ee03e6172d90ca10240ec6c5179fb8a4cabf6ec371b6daad7c414c787361ee02',
  wrapped:
    '726b012049923f0abff742f199421c951f2d2262fbf52c708bb1526e4273de16' +
    '516db5bf6f51f1926b605f3fb7e09845693701a1d3388e937bd11cb5d26d8eff',
  replaces: '01a24ae2eacb74f2a223d08602be8450',
  subjectId: '83293cd5db984a4d9c35a5280951ff19',
  ecdsa:
    '16a18375d4066e5d9603b52b5998d3c1112764e0a98567a592f3d7ce33d4128e' +
    'd69107ca002b345232b62bd107281bd8f083b8095a169c0ca7f1f7156afe40ff',
  bodyDigest: '71e5e2da4a0cdd06dbeff260c064920fbdd06d9bf53e8971c0f09ec57d04d64a',
  ecdsaMessage:
    '72656b65792f76312f62756e646c652d7369676e6174757265' + '02' + '0cafcb15e70b4d77bbb080de7fac163f' +
    '71e5e2da4a0cdd06dbeff260c064920fbdd06d9bf53e8971c0f09ec57d04d64a',
};

function section14Bundle() {
  const filler = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
  const grant = (i) => ({
    replaces: i === 0 ? h(P14.replaces) : filler(16, i),
    subjectKind: i === 0 ? 2 : 1,
    subjectId: i === 0 ? h(P14.subjectId) : filler(16, 100 + i),
    // 726b0111 ‖ enc (65, starting 04021277c4ab as shown) ‖ nonce (12) ‖ ct+tag (48)
    envelope: concat(h('726b0111'), h('04021277c4ab'), filler(59, 7), filler(12, 200 + i), filler(48, 50 + i)),
  });
  return {
    vault: h(P14.vault),
    run: h(P14.run),
    submitter: h(P14.principal),
    parts: [
      {
        principal: h(P14.principal),
        legacyKeyPair: h(P14.legacyKeyPair),
        newKeyPair: h(P14.newKeyPair),
        target: 'hpke-p256',
        publicKey: h(P14.publicKey),
        wrappedPrivate: h(P14.wrapped),
        grants: Array.from({ length: 19 }, (_, i) => grant(i)),
        nonMigratable: [],
        holderGrants: [],
      },
    ],
  };
}

describe('PROTOCOL §14 bundle and §8 message', () => {
  test('every annotated field sits at its offset; parse and re-encode are byte-identical', () => {
    const bundle = section14Bundle();
    const signatures = [
      { principal: h(P14.principal), kind: 1, bytes: new Uint8Array(256).fill(0x5a) },
      { principal: h(P14.principal), kind: 2, bytes: h(P14.ecdsa) },
    ];
    const bytes = encodeSignedBundle(encodeBody(bundle), signatures);
    assert.equal(bytes.length, 3778, 'the page says 3,778 bytes');
    const at = (offset, hex) => assert.equal(toHex(bytes.subarray(offset, offset + hex.length / 2)), hex, `offset ${offset}`);
    at(0, '72656b65792d62756e646c65');
    at(12, '01');
    at(13, '00000d49');
    at(17, P14.vault);
    at(33, P14.run);
    at(49, P14.principal);
    at(65, '00000001');
    at(69, P14.principal);
    at(85, P14.legacyKeyPair);
    at(101, P14.newKeyPair);
    at(117, '01');
    at(118, P14.publicKey);
    at(183, '01');
    at(184, '00000040');
    at(188, P14.wrapped);
    at(252, '00000013');
    at(256, P14.replaces);
    at(272, '02');
    at(273, P14.subjectId);
    at(289, '00000081');
    at(293, '726b011104021277c4ab');
    at(3410, '00000000');
    at(3414, '00000000');
    at(3418, '0002');
    at(3420, P14.principal);
    at(3436, '01');
    at(3437, '0100');
    at(3695, P14.principal);
    at(3711, '02');
    at(3712, '0040');
    at(3714, P14.ecdsa);
    // Each further grant is 166 bytes.
    assert.equal(3410 - 256, 19 * 166);

    const parsed = parseBundle(bytes);
    assert.equal(parsed.body.length, 3401);
    assert.deepEqual(encodeSignedBundle(encodeBody(parsed.bundle), parsed.signatures), bytes);
    assert.deepEqual(decodeBody(parsed.body), parsed.bundle);
    assert.equal(toHex(parsed.bundle.parts[0].publicKey), P14.publicKey);
    assert.equal(parsed.bundle.parts[0].grants[0].envelope.length, 129);
  });

  test('§8: the ECDSA message is rebuilt and the §14 signature verifies over it', async () => {
    const msg = signedMessageOfDigest(h(P14.bodyDigest), SIGNATURE_KIND.NEW_KEY_ECDSA, h(P14.principal));
    assert.equal(msg.length, 74);
    assert.equal(toHex(msg), P14.ecdsaMessage);
    assert.ok(await ecdsaVerify(CURVES.p256, h(P14.publicKey), msg, h(P14.ecdsa)), 'the signature of §14 over the message of §8');
    const rsaMsg = signedMessageOfDigest(h(P14.bodyDigest), SIGNATURE_KIND.LEGACY_RSA_PSS, h(P14.principal));
    assert.equal(toHex(rsaMsg).slice(50, 52), '01');
  });

  test('refusals of PROTOCOL §7.7', () => {
    const bundle = section14Bundle();
    const sigs = [{ principal: h(P14.principal), kind: 2, bytes: h(P14.ecdsa) }];
    const good = encodeSignedBundle(encodeBody(bundle), sigs);
    const mutate = (f) => {
      const b = good.slice();
      f(b);
      return b;
    };
    const cases = [
      ['bundle_bad_magic', good.subarray(0, 11)],
      ['bundle_bad_magic', mutate((b) => (b[0] = 0x52))],
      ['bundle_unsupported_version', mutate((b) => (b[12] = 2))],
      ['bundle_truncated', good.subarray(0, good.length - 1)],
      ['bundle_trailing_bytes', concat(good, Uint8Array.of(0))],
      ['bundle_bad_tag', mutate((b) => (b[117] = 4))],
      ['bundle_bad_tag', mutate((b) => (b[117] = 0))],
      // Key kind 03 (hybrid) before a P-256 key: 1,281 bytes are read as a
      // hybrid key, which they are not.
      ['bundle_bad_public_key', mutate((b) => (b[117] = 3))],
      ['bundle_bad_tag', mutate((b) => (b[183] = 2))],
      ['bundle_bad_tag', mutate((b) => (b[272] = 3))],
      ['bundle_bad_tag', mutate((b) => (b[3420 + 16] = 3))],
      ['bundle_bad_public_key', mutate((b) => (b[150] ^= 1))],
      ['bundle_bad_public_key', mutate((b) => (b[118] = 2))],
      ['bundle_bad_envelope', mutate((b) => (b[293 + 3] = 0x14))],
      ['bundle_bad_envelope', mutate((b) => (b[188 + 2] = 2))],
      ['bundle_count_too_large', mutate((b) => b.set([0, 0, 1, 0], 65))],
      ['bundle_truncated', mutate((b) => b.set([0, 0, 0, 2], 65))],
      ['bundle_count_too_large', mutate((b) => b.set([0, 0, 1, 0], 252))],
      ['bundle_count_too_large', mutate((b) => b.set([0xff, 0xff], 3418))],
      ['bundle_trailing_bytes', mutate((b) => b.set([0, 0, 0x0d, 0x4a], 13))],
      ['bundle_truncated', mutate((b) => b.set([0, 0, 0x0e, 0x4a], 13))],
    ];
    for (const [code, bytes] of cases) {
      assert.throws(() => parseBundle(bytes), { code }, code);
    }
  });
});

// ---------------------------------------------------------------------------
// A small synthetic vault: an e2ee user with grants in every legacy scheme
// and broken ones, a role it can open with a migrated and a pending fellow
// member, a role it cannot open. The bundle is built, parsed, its
// signatures verified and every grant it wrote opened again.

async function rsaKeyPair() {
  const pair = await subtle.generateKey(
    { name: 'RSA-OAEP', modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-256' },
    true,
    ['encrypt', 'decrypt'],
  );
  return {
    spki: new Uint8Array(await subtle.exportKey('spki', pair.publicKey)),
    pkcs8: new Uint8Array(await subtle.exportKey('pkcs8', pair.privateKey)),
  };
}

async function legacyEnvelope(scheme, spki, secret) {
  const head = Uint8Array.of(0x72, 0x6b, 0x01, scheme);
  if (scheme === 0x01 || scheme === 0x02) {
    const key = await subtle.importKey('spki', spki, { name: 'RSA-OAEP', hash: scheme === 1 ? 'SHA-1' : 'SHA-256' }, false, ['encrypt']);
    return concat(head, new Uint8Array(await subtle.encrypt({ name: 'RSA-OAEP' }, key, secret)));
  }
  // 03: OAEP encoding with a SHA-256 label hash and MGF1-SHA-1, then m^e mod n.
  const pub = new RsaPublicKey(spki);
  const k = pub.modulusLength;
  const lHash = new Uint8Array(await subtle.digest('SHA-256', new Uint8Array(0)));
  const db = concat(lHash, new Uint8Array(k - secret.length - 2 * 32 - 2), Uint8Array.of(1), secret);
  const seed = randomBytes(32);
  const maskedDb = db.map((b, i) => b ^ 0).map((b, i) => b);
  const dbMask = await mgf1('SHA-1', seed, k - 33);
  for (let i = 0; i < maskedDb.length; i++) maskedDb[i] ^= dbMask[i];
  const seedMask = await mgf1('SHA-1', maskedDb, 32);
  const maskedSeed = seed.map((b, i) => b ^ seedMask[i]);
  const em = concat(Uint8Array.of(0), maskedSeed, maskedDb);
  const n = bytesToBigInt(pub.n);
  const e = bytesToBigInt(pub.e);
  let c = 1n;
  let base = bytesToBigInt(em);
  for (let x = e; x > 0n; x >>= 1n) {
    if (x & 1n) c = (c * base) % n;
    base = (base * base) % n;
  }
  return concat(head, bigIntToBytes(c, k));
}

let fixture;
async function vaultFixture() {
  if (fixture) return fixture;
  const ids = () => {
    const t = randomUuid();
    return { t, b: uuidToBytes(t) };
  };
  const vault = ids();
  const run = ids();
  const user = ids();
  const userKp = ids();
  const role = ids();
  const roleKp = ids();
  const other = ids(); // a role the user cannot open
  const otherKp = ids();
  const migrated = ids(); // a fellow member who migrated
  const migratedKp = ids();
  const pending = ids(); // a fellow member who has not
  const pendingKp = ids();
  const [userRsa, roleRsa, otherRsa, pendingRsa] = await Promise.all([rsaKeyPair(), rsaKeyPair(), rsaKeyPair(), rsaKeyPair()]);
  const migratedEc = await keyPairOfScalar(CURVES.p256, await deriveScalar(SUITES.p256, utf8('migrated member')), 'ECDH');
  const master = randomBytes(32);
  const userKek = await deriveKek(master, vault.b, user.b);
  const roleKek = randomBytes(32);
  const otherKek = randomBytes(32);
  const secrets = new Map();
  const grant = async (scheme, spki, kind, subject, secret = randomBytes(32)) => {
    const g = ids();
    secrets.set(g.t, secret);
    return {
      id: g.t,
      subject: { kind, id: subject },
      envelope: toHex(await legacyEnvelope(scheme, spki, secret)),
    };
  };
  const userGrants = [
    await grant(0x01, userRsa.spki, 'record_key', randomUuid()),
    await grant(0x02, userRsa.spki, 'record_key', randomUuid()),
    await grant(0x03, userRsa.spki, 'record_key', randomUuid()),
    await grant(0x03, userRsa.spki, 'private_key', roleKp.t, roleKek),
    { id: randomUuid(), subject: { kind: 'record_key', id: randomUuid() }, envelope: '726b01' }, // malformed
    {
      id: randomUuid(),
      subject: { kind: 'record_key', id: randomUuid() },
      envelope: toHex(concat(Uint8Array.of(0x72, 0x6b, 0x01, 0x11), randomBytes(125))),
    }, // not legacy
    {
      id: randomUuid(),
      subject: { kind: 'record_key', id: randomUuid() },
      envelope: toHex(concat(Uint8Array.of(0x72, 0x6b, 0x01, 0x02), randomBytes(256))),
    }, // does not decrypt
  ];
  const roleGrants = [
    await grant(0x02, roleRsa.spki, 'record_key', randomUuid()),
    await grant(0x03, roleRsa.spki, 'record_key', randomUuid()),
    await grant(0x01, roleRsa.spki, 'record_key', randomUuid()),
  ];
  const legacyKey = async (kp, owner, kek, rsa) => ({
    id: kp.t,
    public_key_spki: toHex(rsa.spki),
    wrapped_private: toHex(await wrapPrivateKey(kek, vault.b, owner.b, kp.b, rsa.pkcs8)),
  });
  const json = {
    format: 'rekey-package/2',
    vault: vault.t,
    run: run.t,
    principal: user.t,
    target: 'hpke-p256',
    legacy_key: await legacyKey(userKp, user, userKek, userRsa),
    pending_grants: userGrants.sort((a, b) => (a.id < b.id ? -1 : 1)),
    candidates: [
      {
        principal: other.t,
        legacy_key: await legacyKey(otherKp, other, otherKek, otherRsa),
        pending_grants: [await grant(0x02, otherRsa.spki, 'record_key', randomUuid())],
        holders: [{ state: 'pending', principal: user.t, key_pair: userKp.t, public_key_spki: toHex(userRsa.spki) }],
      },
      {
        principal: role.t,
        legacy_key: await legacyKey(roleKp, role, roleKek, roleRsa),
        pending_grants: roleGrants,
        holders: [
          { state: 'migrated', principal: migrated.t, key_pair: migratedKp.t, target: 'hpke-p256', public_key: toHex(migratedEc.publicPoint) },
          { state: 'pending', principal: user.t, key_pair: userKp.t, public_key_spki: toHex(userRsa.spki) },
          { state: 'pending', principal: pending.t, key_pair: pendingKp.t, public_key_spki: toHex(pendingRsa.spki) },
        ],
      },
    ],
  };
  fixture = { json, master, vault, run, user, userKp, role, roleKp, other, migrated, migratedKp, migratedEc, pending, pendingKp, pendingRsa, userRsa, secrets, userGrants, roleGrants };
  return fixture;
}

const clone = (x) => JSON.parse(JSON.stringify(x));

describe('building a bundle', () => {
  test('the bundle parses, verifies, and every grant it writes opens to the right secret', async () => {
    const f = await vaultFixture();
    const pkg = parsePackage(JSON.stringify(f.json), { principal: f.user.t, vault: f.vault.t });
    const progress = [];
    const built = await buildBundle(pkg, f.master, { onProgress: (p) => progress.push(p.stage) });
    assert.ok(progress.includes('grants') && progress.includes('sign'));
    assert.deepEqual(built.report.principals, [f.user.t, f.role.t]);
    assert.deepEqual(built.report.skipped.map((s) => s.principal), [f.other.t]);
    assert.equal(built.report.nonMigratable, 3);
    assert.equal(built.report.rewrapped, 4 + 3);
    assert.equal(built.report.holderGrants, 3);

    const { body, bundle, signatures } = parseBundle(built.bytes);
    assert.deepEqual(encodeSignedBundle(encodeBody(bundle), signatures), built.bytes);
    assert.deepEqual(bundle.vault, f.vault.b);
    assert.deepEqual(bundle.run, f.run.b);
    assert.deepEqual(bundle.submitter, f.user.b);
    const [mine, role] = bundle.parts;
    assert.deepEqual(mine.principal, f.user.b);
    assert.deepEqual(mine.legacyKeyPair, f.userKp.b);
    assert.deepEqual(role.principal, f.role.b);
    assert.deepEqual(role.legacyKeyPair, f.roleKp.b);

    // Signatures: per part RSA-PSS (legacy key) then ECDSA (new key), §8.
    assert.deepEqual(signatures.map((s) => [toHex(s.principal), s.kind]), [
      [toHex(f.user.b), 1],
      [toHex(f.user.b), 2],
      [toHex(f.role.b), 1],
      [toHex(f.role.b), 2],
    ]);
    const digest = new Uint8Array(await subtle.digest('SHA-256', body));
    const legacyOf = [new RsaPublicKey(fromHex(f.json.legacy_key.public_key_spki)), new RsaPublicKey(fromHex(f.json.candidates[1].legacy_key.public_key_spki))];
    for (const [i, part] of bundle.parts.entries()) {
      const [rsa, ec] = signatures.slice(2 * i, 2 * i + 2);
      assert.equal(rsa.bytes.length, 256);
      assert.equal(ec.bytes.length, 64, 'ECDSA is r ‖ s, not DER');
      assert.ok(await legacyOf[i].verifyPss(signedMessageOfDigest(digest, 1, part.principal), rsa.bytes));
      assert.ok(await ecdsaVerify(CURVES.p256, part.publicKey, signedMessageOfDigest(digest, 2, part.principal), ec.bytes));
    }

    // The account's new private key opens under its KEK, bound to the new id.
    const kek = await deriveKek(f.master, f.vault.b, f.user.b);
    const myScalar = await unwrapPrivateKey(kek, f.vault.b, f.user.b, mine.newKeyPair, mine.wrappedPrivate);
    const myKey = await keyPairOfScalar(CURVES.p256, myScalar, 'ECDH');
    assert.deepEqual(myKey.publicPoint, mine.publicKey);
    const open = (env, key, recipient, kind, subject) => openBatchGrant(parseEnvelope(env), key, f.vault.b, recipient, kind, subject);
    for (const g of mine.grants) {
      const secret = await open(g.envelope, myKey, f.user.b, g.subjectKind, g.subjectId);
      assert.deepEqual(secret, f.secrets.get(toHex(g.replaces).replace(/(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')));
      assert.equal(g.envelope.length, 129);
    }
    assert.deepEqual(
      mine.nonMigratable.map((n) => n.reason).sort(),
      [1, 2, 3],
      'malformed, could not decrypt, not legacy',
    );
    // Coverage: every pending grant exactly once.
    const covered = [...mine.grants.map((g) => toHex(g.replaces)), ...mine.nonMigratable.map((n) => toHex(n.grant))].sort();
    assert.deepEqual(covered, f.json.pending_grants.map((g) => g.id.replace(/-/g, '')).sort());

    // The role's new KEK, from each holder's grant.
    const byHolder = new Map(role.holderGrants.map((g) => [toHex(g.holder), g]));
    assert.equal(byHolder.size, 3);
    const subject = role.newKeyPair;
    const own = byHolder.get(toHex(f.user.b));
    assert.deepEqual(own.holderKeyPair, mine.newKeyPair, 'the account gets the KEK under its new key');
    const newKek = await open(own.envelope, myKey, f.user.b, 2, subject);
    const viaMigrated = byHolder.get(toHex(f.migrated.b));
    assert.deepEqual(viaMigrated.holderKeyPair, f.migratedKp.b);
    assert.equal(viaMigrated.envelope[3], 0x11);
    assert.deepEqual(await open(viaMigrated.envelope, f.migratedEc, f.migrated.b, 2, subject), newKek);
    const viaPending = byHolder.get(toHex(f.pending.b));
    assert.deepEqual(viaPending.holderKeyPair, f.pendingKp.b);
    assert.equal(viaPending.envelope[3], 0x02);
    const pendingKey = await RsaPrivateKey.fromPkcs8(f.pendingRsa.pkcs8);
    assert.deepEqual(await pendingKey.decrypt(2, viaPending.envelope.subarray(4)), newKek);

    // The role's new private key opens under the new KEK; its grants open.
    const roleScalar = await unwrapPrivateKey(newKek, f.vault.b, f.role.b, role.newKeyPair, role.wrappedPrivate);
    const roleKey = await keyPairOfScalar(CURVES.p256, roleScalar, 'ECDH');
    assert.deepEqual(roleKey.publicPoint, role.publicKey);
    assert.equal(role.grants.length, 3);
    for (const g of role.grants) {
      const id = toHex(g.replaces).replace(/(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
      assert.deepEqual(await open(g.envelope, roleKey, f.role.b, g.subjectKind, g.subjectId), f.secrets.get(id));
    }
  });

  test('a rebuild reuses opened grants and makes fresh keys', async () => {
    const f = await vaultFixture();
    const pkg = parsePackage(f.json, { principal: f.user.t });
    const opened = new OpenedGrants();
    const a = await buildBundle(pkg, f.master, { opened });
    assert.equal(opened.size, 4 + 3);
    const b = await buildBundle(pkg, f.master, { opened });
    assert.notDeepEqual(a.report.newKeyPairs, b.report.newKeyPairs);
    opened.wipe();
    assert.equal(opened.size, 0);
  });

  test('a wrong master secret, a mismatched key and a missing wrapped key are refused', async () => {
    const f = await vaultFixture();
    const pkg = parsePackage(f.json, { principal: f.user.t });
    await assert.rejects(buildBundle(pkg, randomBytes(32)), { code: 'wrong_password' });
    const swapped = clone(f.json);
    swapped.legacy_key.public_key_spki = f.json.candidates[1].holders[2].public_key_spki;
    await assert.rejects(buildBundle(parsePackage(swapped, { principal: f.user.t }), f.master), { code: 'package_refused' });
    const missing = clone(f.json);
    missing.legacy_key.wrapped_private = null;
    await assert.rejects(buildBundle(parsePackage(missing, { principal: f.user.t }), f.master), { code: 'missing_wrapped_key' });
  });
});

describe('package refusals (PROTOCOL §5.6)', () => {
  test('the fixture package is accepted', async () => {
    const f = await vaultFixture();
    const p = parsePackage(JSON.stringify(f.json), { principal: f.user.t, vault: f.vault.t });
    assert.equal(p.candidates.length, 2);
  });

  test('every mutation is refused', async () => {
    const f = await vaultFixture();
    const role = 1;
    const mutations = {
      'unknown top-level member': (j) => (j.extra = 1),
      'unknown legacy_key member': (j) => (j.legacy_key.extra = 1),
      'unknown grant member': (j) => (j.pending_grants[0].extra = 1),
      'unknown subject member': (j) => (j.pending_grants[0].subject.extra = 1),
      'unknown candidate member': (j) => (j.candidates[role].extra = 1),
      'unknown holder member': (j) => (j.candidates[role].holders[0].extra = 1),
      'missing member': (j) => delete j.run,
      'wrong format': (j) => (j.format = 'rekey-package/1'),
      'format 1 with its holder shape': (j) => {
        j.format = 'rekey-package/1';
        delete j.target;
        const m = j.candidates[role].holders[0];
        j.candidates[role].holders[0] = { state: 'migrated', principal: m.principal, key_pair: m.key_pair, curve: 'p256', public_key_sec1: m.public_key };
      },
      'target missing': (j) => delete j.target,
      'unknown target': (j) => (j.target = 'hpke-x448'),
      'target in upper case': (j) => (j.target = 'HPKE-P256'),
      'target not a string': (j) => (j.target = 1),
      'target null': (j) => (j.target = null),
      'another account': (j) => (j.principal = randomUuid()),
      'another vault': (j) => (j.vault = randomUuid()),
      'uppercase uuid': (j) => (j.run = j.run.toUpperCase()),
      'uuid without hyphens': (j) => (j.run = j.run.replace(/-/g, '')),
      'uppercase hex': (j) => (j.legacy_key.public_key_spki = j.legacy_key.public_key_spki.toUpperCase()),
      'odd hex': (j) => (j.pending_grants[0].envelope += '0'),
      'hex that is a number': (j) => (j.pending_grants[0].envelope = 12),
      'subject kind': (j) => (j.pending_grants[0].subject.kind = 'record'),
      'SPKI not RSA': (j) => (j.legacy_key.public_key_spki = '3059301306072a8648ce3d020106082a8648ce3d03010703420004' + '00'.repeat(64)),
      'RSA-1024': (j) =>
        (j.legacy_key.public_key_spki =
          '30819f300d06092a864886f70d010101050003818d0030818902818100' + 'c1'.repeat(128) + '0203010001'),
      'SPKI with trailing bytes': (j) => (j.legacy_key.public_key_spki += '00'),
      'holder SPKI truncated': (j) => (j.candidates[role].holders[2].public_key_spki = j.candidates[role].holders[2].public_key_spki.slice(0, 100)),
      'SEC1 point off the curve': (j) => {
        const p = j.candidates[role].holders[0].public_key;
        j.candidates[role].holders[0].public_key = p.slice(0, -2) + (p.endsWith('00') ? '01' : '00');
      },
      'SEC1 point compressed': (j) => (j.candidates[role].holders[0].public_key = '02' + j.candidates[role].holders[0].public_key.slice(2, 66)),
      'SEC1 point of the other curve length': (j) => (j.candidates[role].holders[0].target = 'hpke-p521'),
      'P-256 point named a hybrid key': (j) => (j.candidates[role].holders[0].target = 'hpke-mlkem768-x25519'),
      'unknown holder target': (j) => (j.candidates[role].holders[0].target = 'hpke-p384'),
      'holder target missing': (j) => delete j.candidates[role].holders[0].target,
      'holder with the former curve member': (j) => (j.candidates[role].holders[0].curve = 'p256'),
      'holder with the former public_key_sec1': (j) => {
        const h0 = j.candidates[role].holders[0];
        h0.public_key_sec1 = h0.public_key;
        delete h0.public_key;
      },
      'unknown holder state': (j) => (j.candidates[role].holders[1].state = 'blocked'),
      'wrapped_private not an envelope': (j) => (j.legacy_key.wrapped_private = '00ff'),
      'candidate wrapped_private not an envelope': (j) => (j.candidates[role].legacy_key.wrapped_private = '726b0120'),
      'grant twice': (j) => j.pending_grants.push(clone(j.pending_grants[0])),
      'candidate grant twice': (j) => j.candidates[role].pending_grants.push(clone(j.candidates[role].pending_grants[0])),
      'candidate twice': (j) => j.candidates.push(clone(j.candidates[role])),
      'candidate is the account': (j) => (j.candidates[role].principal = j.principal),
      'holder twice': (j) => j.candidates[role].holders.push(clone(j.candidates[role].holders[0])),
      'candidates not an array': (j) => (j.candidates = {}),
      'null package': () => null,
    };
    for (const [name, mutate] of Object.entries(mutations)) {
      const j = clone(f.json);
      const replaced = mutate(j);
      const input = replaced === null ? 'null' : JSON.stringify(j);
      assert.throws(() => parsePackage(input, { principal: f.user.t, vault: f.vault.t }), { code: 'package_refused' }, name);
    }
    assert.throws(() => parsePackage('{not json', { principal: f.user.t }), { code: 'package_refused' });
  });

  test('a pending grant\'s envelope is not checked at this stage', async () => {
    const f = await vaultFixture();
    const j = clone(f.json);
    j.pending_grants[0].envelope = '';
    assert.equal(parsePackage(j, { principal: f.user.t }).pendingGrants[0].envelope.length, 0);
  });
});

// ---------------------------------------------------------------------------
// PROTOCOL §16 conformance vectors (vectors/protocol/, written by rekey's
// own client against a real vault): this client must read them the same way.

describe('conformance vectors (PROTOCOL §16)', () => {
  const reference = JSON.parse(readFileSync(join(root, 'vectors', 'protocol', 'reference-bundle.json'), 'utf8'));
  const malformed = JSON.parse(readFileSync(join(root, 'vectors', 'protocol', 'malformed-bundles.json'), 'utf8'));
  // Until vectors/protocol/ is regenerated for rekey-package/2, its package
  // is read in the new shape: the same bytes, target hpke-p256 (the only
  // target /1 had), migrated holders' keys under `target`/`public_key`.
  const referencePackage = () => {
    const p = clone(reference.package);
    if (p.format !== 'rekey-package/1') return p;
    p.format = 'rekey-package/2';
    p.target = 'hpke-p256';
    for (const c of p.candidates) {
      c.holders = c.holders.map((x) =>
        x.state !== 'migrated'
          ? x
          : { state: 'migrated', principal: x.principal, key_pair: x.key_pair, target: `hpke-${x.curve}`, public_key: x.public_key_sec1 },
      );
    }
    return p;
  };

  test('the reference bundle decodes, re-encodes, and its digest, messages and signatures are as listed', async () => {
    const pkg = parsePackage(referencePackage(), { principal: reference.package.principal });
    const bytes = h(reference.bundle);
    const { body, bundle, signatures } = parseBundle(bytes);
    assert.deepEqual(encodeSignedBundle(encodeBody(bundle), signatures), bytes);
    assert.deepEqual(bundle.vault, pkg.vault.bytes);
    assert.deepEqual(bundle.run, pkg.run.bytes);
    assert.equal(bundle.parts.length, 1 + pkg.candidates.length);
    const digest = new Uint8Array(await subtle.digest('SHA-256', body));
    assert.equal(toHex(digest), reference.body_sha256);
    assert.equal(signatures.length, reference.signed_messages.length);
    for (const [i, s] of signatures.entries()) {
      const listed = reference.signed_messages[i];
      const message = signedMessageOfDigest(digest, s.kind, s.principal);
      assert.equal(toHex(message), listed.message);
      const part = bundle.parts.find((p) => equalBytes(p.principal, s.principal));
      if (s.kind === SIGNATURE_KIND.NEW_KEY_ECDSA) {
        assert.equal(part.target, pkg.target.name);
        assert.ok(await verifyNewKeySignature(pkg.target, part.publicKey, message, s.bytes));
      } else {
        const legacy = equalBytes(s.principal, pkg.principal.bytes)
          ? pkg.legacyKey
          : pkg.candidates.find((c) => equalBytes(c.principal.bytes, s.principal)).legacyKey;
        assert.ok(await legacy.publicKey.verifyPss(message, s.bytes));
      }
    }
  });

  test('every re-wrapped grant opens to the listed secret, which the legacy grant carries', async () => {
    const pkg = parsePackage(referencePackage(), { principal: reference.package.principal });
    const { bundle } = parseBundle(h(reference.bundle));
    const vault = pkg.vault.bytes;
    const me = pkg.principal.bytes;
    const keks = [await deriveKek(h(reference.master_secret), vault, me)];
    const legacy = await RsaPrivateKey.fromPkcs8(await unwrapPrivateKey(keks[0], vault, me, pkg.legacyKey.id.bytes, pkg.legacyKey.wrappedPrivate));
    let own = null;
    let opened = 0;
    for (const [i, part] of bundle.parts.entries()) {
      const scalar = await unwrapPrivateKey(keks[i], vault, part.principal, part.newKeyPair, part.wrappedPrivate);
      const newKey = await newKeyOfBytes(pkg.target, scalar);
      const key = newKey.recipient;
      assert.equal(toHex(newKey.publicKey), reference.parts[i].public_key);
      assert.deepEqual(newKey.publicKey, part.publicKey);
      if (i === 0) own = key;
      for (const [j, g] of part.grants.entries()) {
        const secret = await openBatchGrant(parseEnvelope(g.envelope), key, vault, part.principal, g.subjectKind, g.subjectId);
        assert.equal(toHex(secret), reference.parts[i].grants[j].secret);
        opened += 1;
        if (i === 0) {
          const pending = pkg.pendingGrants.find((p) => equalBytes(p.id.bytes, g.replaces));
          const env = parseEnvelope(pending.envelope);
          assert.deepEqual(await legacy.decrypt(env.scheme, env.ciphertext), secret);
        }
      }
      if (i === 0) {
        for (const later of bundle.parts.slice(1)) {
          const hg = later.holderGrants.find((x) => equalBytes(x.holder, me));
          assert.deepEqual(hg.holderKeyPair, part.newKeyPair);
          keks.push(await openBatchGrant(parseEnvelope(hg.envelope), own, vault, me, 2, later.newKeyPair));
        }
      }
    }
    assert.ok(opened > 0);
  });

  // Whatever the cases are named (the set changes with the vectors: "curve
  // byte 03" became "key kind byte 04" and "key kind byte 03 (hybrid)
  // before a P-256 key"), every one must be refused.
  test('every malformed bundle is refused by the parser', () => {
    assert.ok(malformed.length >= 15);
    for (const c of malformed) {
      assert.equal(c.code, 'bundle_malformed');
      assert.throws(() => parseBundle(h(c.bundle)), RekeyError, c.case);
    }
  });
});

// ---------------------------------------------------------------------------
// Role confirmations (PROTOCOL §15), as the fixture's pending member, after
// the account migrated the role with a bundle this client built.

/** FORMAT §7: 01 ‖ nonce ‖ AES-256-GCM(key, nonce, "rekey/v1/record" ‖ 01 ‖ vault ‖ record, plaintext). */
async function sealRecord(key, vault, record, plaintext) {
  const nonce = randomBytes(12);
  const aad = concat(utf8('rekey/v1/record'), Uint8Array.of(1), vault, record);
  return concat(Uint8Array.of(1), nonce, await aesGcmSeal(key, nonce, aad, plaintext));
}

/** The role checks after the account migrated the role with the fixture package (or `pkgJson`, a variant of it). */
async function roleChecksFixture(pkgJson) {
  const f = await vaultFixture();
  const built = await buildBundle(parsePackage(pkgJson ?? f.json, { principal: f.user.t }), f.master);
  const role = built.bundle.parts[1];
  const viaPending = role.holderGrants.find((g) => equalBytes(g.holder, f.pending.b));
  const pendingMaster = randomBytes(32);
  const pendingKek = await deriveKek(pendingMaster, f.vault.b, f.pending.b);
  const roleLegacy = f.json.candidates[1].legacy_key;
  const records = [];
  const roleGrants = [];
  for (const g of role.grants) {
    const secret = f.secrets.get(bytesToUuid(g.replaces));
    records.push({ id: bytesToUuid(g.subjectId), ciphertext: toHex(await sealRecord(secret, f.vault.b, g.subjectId, utf8('a secret note'))) });
    roleGrants.push({ id: randomUuid(), recipient: f.role.t, subject: { kind: 'record_key', id: bytesToUuid(g.subjectId) }, envelope: toHex(g.envelope) });
  }
  const json = {
    format: 'rekey-role-checks/1',
    vault: f.vault.t,
    run: f.run.t,
    holder: f.pending.t,
    roles: [
      {
        role: f.role.t,
        holder_keys: [
          {
            id: f.pendingKp.t,
            owner: f.pending.t,
            state: 'legacy',
            public_key: toHex(f.pendingRsa.spki),
            wrapped_private: toHex(await wrapPrivateKey(pendingKek, f.vault.b, f.pending.b, f.pendingKp.b, f.pendingRsa.pkcs8)),
          },
        ],
        role_current: { id: bytesToUuid(role.newKeyPair), owner: f.role.t, state: 'current', public_key: toHex(role.publicKey), wrapped_private: toHex(role.wrappedPrivate) },
        role_legacy: { id: roleLegacy.id, owner: f.role.t, state: 'legacy', public_key: roleLegacy.public_key_spki, wrapped_private: roleLegacy.wrapped_private },
        holder_grants: [{ id: randomUuid(), recipient: f.pending.t, subject: { kind: 'private_key', id: bytesToUuid(role.newKeyPair) }, envelope: toHex(viaPending.envelope) }],
        role_grants: roleGrants,
        records,
        subject_keys: [],
        disowned: [],
      },
    ],
  };
  return { f, json, pendingMaster, role };
}

/** confirmRoles against a scripted server answering `json`; answers the outcome and the receipts sent. */
async function confirmAgainst(json, master, f) {
  const sent = [];
  const api = new RekeyApi({
    server: 'http://vault.invalid',
    authorization: 'Bearer t',
    fetch: async (url, init) => {
      if (url.endsWith('/role-checks')) return new Response(JSON.stringify(json), { status: 200 });
      sent.push({ url, body: JSON.parse(init.body) });
      return new Response('{}', { status: 200 });
    },
  });
  const out = await confirmRoles({ api, vault: f.vault.t, principal: f.pending.t, masterSecret: master });
  return { out, sent };
}

describe('role confirmations (PROTOCOL §15)', () => {
  test('an honest migration is confirmed with a receipt the role\'s new key signed', async () => {
    const { f, json, pendingMaster, role } = await roleChecksFixture();
    const { out, sent } = await confirmAgainst(json, pendingMaster, f);
    assert.deepEqual(out, { confirmed: 1, refused: [] });
    assert.equal(sent.length, 1);
    assert.equal(sent[0].url, `http://vault.invalid/v1/principals/${f.pending.t}/role-receipts`);
    const r = sent[0].body;
    assert.deepEqual(Object.keys(r).sort(), ['checked', 'key_pair', 'role', 'signature']);
    assert.equal(r.role, f.role.t);
    assert.equal(r.key_pair, bytesToUuid(role.newKeyPair));
    assert.equal(r.checked, 3);
    const message = receiptMessage(f.vault.b, f.run.b, f.role.b, role.newKeyPair, f.pending.b, 3);
    assert.equal(message.length, 21 + 5 * 16 + 4);
    assert.ok(await ecdsaVerify(CURVES.p256, role.publicKey, message, fromHex(r.signature)));
  });

  test('a receipt the server refuses leaves the role unconfirmed, not the login failed', async () => {
    const { f, json, pendingMaster } = await roleChecksFixture();
    const api = new RekeyApi({
      server: 'http://vault.invalid',
      authorization: 'Bearer t',
      fetch: async (url) => {
        if (url.endsWith('/role-checks')) return new Response(JSON.stringify(json), { status: 200 });
        return new Response(JSON.stringify({ error: 'not a member', code: 'receipt_refused', hint: 'h' }), { status: 403 });
      },
    });
    const out = await confirmRoles({ api, vault: f.vault.t, principal: f.pending.t, masterSecret: pendingMaster });
    assert.equal(out.confirmed, 0);
    assert.equal(out.refused.length, 1);
    assert.match(out.refused[0].reason, /not a member/);
  });

  test('swapped grants, a damaged record and a wrong password send no receipt', async () => {
    const { f, json, pendingMaster } = await roleChecksFixture();
    const swapped = clone(json);
    const [a, b] = swapped.roles[0].role_grants;
    [a.envelope, b.envelope] = [b.envelope, a.envelope];
    let r = await confirmAgainst(swapped, pendingMaster, f);
    assert.equal(r.sent.length, 0);
    assert.equal(r.out.refused.length, 1);
    assert.match(r.out.refused[0].reason, /2 of 3 migrated grants/);

    const damaged = clone(json);
    const rec = damaged.roles[0].records[0];
    rec.ciphertext = rec.ciphertext.slice(0, -2) + (rec.ciphertext.endsWith('00') ? '01' : '00');
    r = await confirmAgainst(damaged, pendingMaster, f);
    assert.equal(r.sent.length, 0);
    assert.match(r.out.refused[0].reason, /1 of 3/);

    const garbageKek = clone(json);
    garbageKek.roles[0].holder_grants[0].envelope = toHex(await legacyEnvelope(0x02, f.pendingRsa.spki, randomBytes(32)));
    r = await confirmAgainst(garbageKek, pendingMaster, f);
    assert.equal(r.sent.length, 0);
    assert.match(r.out.refused[0].reason, /no grant of the role's new key/);

    await assert.rejects(confirmAgainst(json, randomBytes(32), f), { code: 'wrong_password' });
  });

  test('a legacy grant declared unreadable that opens is caught', async () => {
    const { f, json, pendingMaster } = await roleChecksFixture();
    const g = f.roleGrants[0];
    const disowned = clone(json);
    disowned.roles[0].holder_grants.push({
      id: randomUuid(),
      recipient: f.pending.t,
      subject: { kind: 'private_key', id: f.json.candidates[1].legacy_key.id },
      // The role's legacy KEK, as the pending member's legacy grant holds it.
      envelope: toHex(await legacyEnvelope(0x02, f.pendingRsa.spki, f.secrets.get(f.userGrants.find((x) => x.subject.kind === 'private_key').id))),
    });
    disowned.roles[0].disowned = [{ id: g.id, recipient: f.role.t, subject: g.subject, envelope: g.envelope }];
    disowned.roles[0].records.push({ id: g.subject.id, ciphertext: toHex(await sealRecord(f.secrets.get(g.id), f.vault.b, uuidToBytes(g.subject.id), utf8('x'))) });
    const r = await confirmAgainst(disowned, pendingMaster, f);
    assert.equal(r.sent.length, 0);
    assert.match(r.out.refused[0].reason, /declared unreadable opens/);
    // A disowned grant that truly does not open is accepted.
    disowned.roles[0].disowned[0].envelope = toHex(await legacyEnvelope(0x02, f.pendingRsa.spki, randomBytes(32)));
    const ok = await confirmAgainst(disowned, pendingMaster, f);
    assert.deepEqual(ok.out, { confirmed: 1, refused: [] });
  });

  test('checks for another account or vault, or with bad bytes, are refused', async () => {
    const { f, json } = await roleChecksFixture();
    assert.equal(parseRoleChecks(JSON.stringify(json), { principal: f.pending.t, vault: f.vault.t }).roles.length, 1);
    const refused = (j, expected = { principal: f.pending.t, vault: f.vault.t }) =>
      assert.throws(() => parseRoleChecks(JSON.stringify(j), expected), { code: 'role_checks_refused' });
    refused(json, { principal: f.user.t });
    refused(json, { principal: f.pending.t, vault: randomUuid() });
    const bad = [
      (j) => (j.format = 'rekey-role-checks/2'),
      (j) => (j.roles[0].extra = 1),
      (j) => delete j.roles[0].records,
      (j) => (j.roles[0].role_grants[0].envelope = 'zz'),
      (j) => (j.roles[0].role_grants[0].envelope = '726b01'),
      (j) => (j.roles[0].role_current.public_key = '04' + '00'.repeat(64)),
      (j) => (j.roles[0].role_current.state = 'pending'),
      (j) => (j.roles[0].holder_grants[0].subject.kind = 'record'),
    ];
    for (const mutate of bad) {
      const j = clone(json);
      mutate(j);
      refused(j);
    }
    assert.throws(() => parseRoleChecks('not json', { principal: f.pending.t }), { code: 'role_checks_refused' });
  });
});

// ---------------------------------------------------------------------------
// The HTTP loop against a scripted server.

const noRoles = (f, holder) => ({ format: 'rekey-role-checks/1', vault: f.vault.t, run: f.run.t, holder, roles: [] });

describe('the migration loop', () => {
  test('logs nothing secret, sends the session and content type, rebuilds after a conflict', async () => {
    const f = await vaultFixture();
    const calls = [];
    const answers = [
      { status: 409, body: { error: 'the holders of x changed', code: 'holders_changed', hint: 'rebuild' } },
      { status: 200, body: { principals: [f.user.t, f.role.t], grants: 10, non_migratable: 3 } },
    ];
    const fetch = async (url, init) => {
      calls.push({ url, method: init.method, headers: init.headers, length: init.body?.length });
      if (url.endsWith('/package')) return new Response(JSON.stringify(f.json), { status: 200 });
      if (url.endsWith('/role-checks')) return new Response(JSON.stringify(noRoles(f, f.user.t)), { status: 200 });
      const a = answers.shift();
      return new Response(JSON.stringify(a.body), { status: a.status });
    };
    const out = await migrateWithMasterSecret({
      server: 'http://vault.invalid/',
      fetch,
      authorization: 'Bearer t0ken',
      vault: f.vault.t,
      principal: f.user.t,
      masterSecret: f.master.slice(),
    });
    assert.equal(out.retries, 1);
    assert.deepEqual(out.principals, [f.user.t, f.role.t]);
    assert.equal(out.nonMigratable, 3);
    assert.ok(out.bundleBytes > 1000);
    assert.deepEqual(
      calls.map((c) => `${c.method} ${c.url}`),
      [
        `GET http://vault.invalid/v1/principals/${f.user.t}/package`,
        `POST http://vault.invalid/v1/principals/${f.user.t}/bundle`,
        `GET http://vault.invalid/v1/principals/${f.user.t}/package`,
        `POST http://vault.invalid/v1/principals/${f.user.t}/bundle`,
        `GET http://vault.invalid/v1/principals/${f.user.t}/role-checks`,
      ],
    );
    assert.deepEqual(out.roles, { confirmed: 0, refused: [] });
    for (const c of calls) assert.equal(c.headers.Authorization, 'Bearer t0ken');
    assert.equal(calls[1].headers['Content-Type'], 'application/octet-stream');
  });

  test('already_migrated is done; not_pending and other refusals stop with the server\'s hint', async () => {
    const f = await vaultFixture();
    const run = (status, body, where = 'bundle') =>
      migrateWithMasterSecret({
        fetch: async (url) => {
          if (url.endsWith('/package') && where === 'bundle') return new Response(JSON.stringify(f.json), { status: 200 });
          if (url.endsWith('/role-checks')) return new Response(JSON.stringify(noRoles(f, f.user.t)), { status: 200 });
          return new Response(JSON.stringify(body), { status, headers: { 'Retry-After': '7' } });
        },
        server: 'http://vault.invalid',
        vault: f.vault.t,
        principal: f.user.t,
        masterSecret: f.master.slice(),
      });
    assert.equal((await run(409, { error: 'migrated', code: 'already_migrated', hint: 'h' })).alreadyMigrated, true);
    assert.equal((await run(409, { error: 'migrated', code: 'already_migrated', hint: 'h' }, 'package')).alreadyMigrated, true);
    await assert.rejects(run(409, { error: 'blocked', code: 'not_pending', hint: 'ask the administrator' }), {
      code: 'not_pending',
      hint: 'ask the administrator',
      status: 409,
    });
    await assert.rejects(run(401, { error: 'no session', code: 'session_required', hint: 'log in' }, 'package'), (e) => {
      assert.ok(e instanceof RekeyError);
      assert.equal(e.code, 'session_required');
      assert.equal(e.retryAfter, 7);
      return true;
    });
  });

  test('openSession sends the authenticator as lowercase hex and keeps the token', async () => {
    let sent;
    const api = new RekeyApi({
      server: 'http://vault.invalid',
      fetch: async (url, init) => {
        sent = { url, init };
        return new Response(JSON.stringify({ token: 'abc', principal: '0cafcb15-e70b-4d77-bbb0-80de7fac163f', expires_at: 1 }), { status: 200 });
      },
    });
    const s = await api.openSession('0cafcb15-e70b-4d77-bbb0-80de7fac163f', new Uint8Array(32).fill(0xab));
    assert.equal(s.token, 'abc');
    assert.equal(sent.url, 'http://vault.invalid/v1/session');
    assert.deepEqual(JSON.parse(sent.init.body), { principal: '0cafcb15-e70b-4d77-bbb0-80de7fac163f', authenticator: 'ab'.repeat(32) });
    assert.equal(api._authorization, 'Bearer abc');
  });
});

test('point checks refuse the point at infinity encoding and wrong lengths', () => {
  assert.equal(isValidPoint(CURVES.p256, new Uint8Array(65).fill(0)), false);
  assert.equal(isValidPoint(CURVES.p256, concat(Uint8Array.of(4), new Uint8Array(64))), false);
  assert.throws(() => checkPoint(CURVES.p521, h(FORMAT_P256.pkR)), { code: 'bad_public_key' });
  assert.ok(isValidPoint(CURVES.p521, h(FORMAT_P521.pkR)));
});

// ---------------------------------------------------------------------------
// Migration targets (rekey-package/2, PROTOCOL §5 and §7.2, FORMAT §3.2).

const HYBRID = TARGETS['hpke-mlkem768-x25519'];

/** A hybrid key pair derived from `label` (X-Wing DeriveKeyPair and DHKEM(P-256) DeriveKeyPair of its bytes). */
async function hybridKeyOf(label) {
  const ikm = utf8(label);
  const bytes = concat(deriveXWingSeed(ikm), await deriveScalar(SUITES.p256, ikm));
  return { bytes, key: await newKeyOfBytes(HYBRID, bytes) };
}

/** The fixture package with `target`, its migrated holder re-keyed to `holderTarget`, and a second, P-256 migrated holder. */
async function targetVariant(f, target, holderTarget = target) {
  const j = clone(f.json);
  j.target = target;
  const holders = j.candidates[1].holders;
  let holderKey = f.migratedEc;
  if (holderTarget === HYBRID.name) holderKey = (await hybridKeyOf('migrated member, hybrid')).key;
  if (holderTarget === 'hpke-p521') holderKey = await keyPairOfScalar(CURVES.p521, await deriveScalar(SUITES.p521, utf8('migrated member')), 'ECDH');
  holders[0].target = holderTarget;
  holders[0].public_key = toHex(holderKey.publicKey ?? holderKey.publicPoint);
  const p256Holder = { t: randomUuid(), kp: randomUuid() };
  holders.push({ state: 'migrated', principal: p256Holder.t, key_pair: p256Holder.kp, target: 'hpke-p256', public_key: toHex(f.migratedEc.publicPoint) });
  return { json: j, holderKey: holderKey.recipient ?? holderKey, p256Holder };
}

describe('migration targets', () => {
  test('package v2: the target and the migrated holders\' keys are parsed', async () => {
    const f = await vaultFixture();
    const p = parsePackage(JSON.stringify(f.json), { principal: f.user.t, vault: f.vault.t });
    assert.equal(p.format, 'rekey-package/2');
    assert.equal(p.target, TARGETS['hpke-p256']);
    assert.equal(p.target.scheme, 0x11);
    const [migrated, pending] = p.candidates[1].holders;
    assert.equal(migrated.state, 'migrated');
    assert.equal(migrated.target, TARGETS['hpke-p256']);
    assert.deepEqual(migrated.publicKey, f.migratedEc.publicPoint);
    assert.equal(migrated.keyPair.text, f.migratedKp.t);
    assert.equal(pending.state, 'pending');
    for (const t of ['hpke-p521', 'hpke-mlkem768-x25519']) {
      const { json } = await targetVariant(f, t);
      const q = parsePackage(json, { principal: f.user.t });
      assert.equal(q.target.name, t);
      assert.equal(q.candidates[1].holders[0].target.name, t);
      assert.equal(q.candidates[1].holders[0].publicKey.length, TARGETS[t].publicKeyLen);
      assert.equal(q.candidates[1].holders[3].target.name, 'hpke-p256');
    }
  });

  test('an unknown or missing target is refused', async () => {
    const f = await vaultFixture();
    for (const [name, mutate] of [
      ['unknown', (j) => (j.target = 'hpke-x448')],
      ['missing', (j) => delete j.target],
      ['empty', (j) => (j.target = '')],
      ['an object', (j) => (j.target = { name: 'hpke-p256' })],
      ['the holder\'s, unknown', (j) => (j.candidates[1].holders[0].target = 'p256')],
      ['the holder\'s, missing', (j) => delete j.candidates[1].holders[0].target],
    ]) {
      const j = clone(f.json);
      mutate(j);
      assert.throws(() => parsePackage(j, { principal: f.user.t }), { code: 'package_refused' }, name);
    }
    const j = clone(f.json);
    delete j.target;
    assert.throws(() => parsePackage(j, { principal: f.user.t }), /lacks "target"/);
    j.target = 'hpke-x448';
    assert.throws(() => parsePackage(j, { principal: f.user.t }), /target is not one of hpke-p256, hpke-p521, hpke-mlkem768-x25519/);
  });

  test('a hybrid holder key is parsed; one with a bad half or length is refused', async () => {
    const f = await vaultFixture();
    const { json } = await targetVariant(f, HYBRID.name);
    const good = json.candidates[1].holders[0].public_key;
    assert.equal(good.length, 2 * 1281);
    assert.ok(parsePackage(json, { principal: f.user.t }));
    const at = (hexKey, offset, byteHex) => hexKey.slice(0, 2 * offset) + byteHex + hexKey.slice(2 * offset + byteHex.length);
    const bad = {
      'one byte short': good.slice(0, -2),
      'one byte more': good + '00',
      'an ML-KEM coefficient of 4095': at(good, 0, 'ff0f'),
      'an ML-KEM coefficient of 3329 (q)': at(good, 3, '010d'),
      'the P-256 half off the curve': at(good, 1280, good.endsWith('00') ? '01' : '00'),
      'the P-256 half compressed': at(good, 1216, '02'),
      'the P-256 half zero': good.slice(0, 2 * 1216) + '04' + '00'.repeat(64),
      'a P-256 point': toHex(f.migratedEc.publicPoint),
    };
    for (const [name, value] of Object.entries(bad)) {
      const j = clone(json);
      j.candidates[1].holders[0].public_key = value;
      assert.throws(() => parsePackage(j, { principal: f.user.t }), { code: 'package_refused' }, name);
    }
    // A hybrid key named as a P-256 key.
    const j = clone(json);
    j.candidates[1].holders[0].target = 'hpke-p256';
    assert.throws(() => parsePackage(j, { principal: f.user.t }), { code: 'package_refused' });
    // The check itself: q − 1 passes, q does not, ρ (the last 32 bytes) is not a coefficient.
    const ek = h(good).slice(0, 1184);
    ek.set([0x00, 0xd0, 0xff], 0); // coefficients 0x000 and 0xffd (4093)
    assert.equal(isValidMlKem768Key(ek), false);
    ek.set([0x00, 0x0d, 0xd0], 0); // 0xd00 and 0xd00 (3328 = q − 1)
    assert.equal(isValidMlKem768Key(ek), true);
    ek.fill(0xff, 1152);
    assert.equal(isValidMlKem768Key(ek), true);
  });

  test('bundle key kind 03: a hybrid key parses and re-encodes; a bad half is refused', async () => {
    const { key } = await hybridKeyOf('bundle key kind 03');
    const bundle = section14Bundle();
    Object.assign(bundle.parts[0], { target: HYBRID.name, publicKey: key.publicKey });
    const body = encodeBody(bundle);
    assert.equal(body[100], 0x03, 'the key kind byte follows the three part ids');
    assert.deepEqual(body.subarray(101, 101 + 1281), key.publicKey);
    const bytes = encodeSignedBundle(body, []);
    const parsed = parseBundle(bytes);
    assert.equal(parsed.bundle.parts[0].target, HYBRID.name);
    assert.deepEqual(parsed.bundle.parts[0].publicKey, key.publicKey);
    assert.deepEqual(encodeSignedBundle(encodeBody(parsed.bundle), []), bytes);
    const at = 17 + 101; // magic, version, body length
    const mutate = (f) => {
      const b = bytes.slice();
      f(b);
      return b;
    };
    for (const [name, code, b] of [
      ['ML-KEM coefficient out of range', 'bundle_bad_public_key', mutate((x) => x.set([0xff, 0x0f], at))],
      ['P-256 half off the curve', 'bundle_bad_public_key', mutate((x) => (x[at + 1280] ^= 1))],
      ['P-256 half not uncompressed', 'bundle_bad_public_key', mutate((x) => (x[at + 1216] = 0x03))],
      ['key kind 04', 'bundle_bad_tag', mutate((x) => (x[at - 1] = 4))],
      ['key kind 01 before a hybrid key', 'bundle_bad_public_key', mutate((x) => (x[at - 1] = 1))],
    ]) {
      assert.throws(() => parseBundle(b), { code }, name);
    }
    // The encoder refuses a key of another length than its kind's.
    assert.throws(() => encodeBody({ ...bundle, parts: [{ ...bundle.parts[0], publicKey: key.publicKey.subarray(0, 65) }] }), { code: 'bad_bundle' });
    assert.throws(() => encodeBody({ ...bundle, parts: [{ ...bundle.parts[0], target: 'hpke-x448' }] }), { code: 'bad_bundle' });
    // The former model (curve: 'p256') still encodes.
    const former = section14Bundle();
    delete former.parts[0].target;
    former.parts[0].curve = 'p256';
    assert.deepEqual(encodeBody(former), encodeBody(section14Bundle()));
  });

  test('a target the caller does not accept is refused before anything is built or sent', async () => {
    const f = await vaultFixture();
    const { json } = await targetVariant(f, 'hpke-p521');
    const calls = [];
    const fetch = async (url, init) => {
      calls.push(`${init.method} ${url}`);
      if (url.endsWith('/package')) return new Response(JSON.stringify(json), { status: 200 });
      return new Response('{}', { status: 200 });
    };
    const progress = [];
    await assert.rejects(
      migrateWithMasterSecret({
        server: 'http://vault.invalid',
        fetch,
        vault: f.vault.t,
        principal: f.user.t,
        masterSecret: f.master.slice(),
        targets: ['hpke-p256'],
        onProgress: (p) => progress.push(p.stage),
      }),
      (e) => {
        assert.ok(e instanceof RekeyError);
        assert.equal(e.code, 'unsupported_target');
        assert.match(e.message, /hpke-p521/);
        assert.ok(e.hint);
        return true;
      },
    );
    assert.deepEqual(calls, [`GET http://vault.invalid/v1/principals/${f.user.t}/package`]);
    assert.deepEqual(progress, ['package'], 'no unlock, no grants, no submit');
    // A hybrid holder needs the hybrid target too, whatever the package's own.
    const mixed = await targetVariant(f, 'hpke-p256', HYBRID.name);
    const pkg = parsePackage(mixed.json, { principal: f.user.t });
    await assert.rejects(buildBundle(pkg, f.master, { targets: ['hpke-p256'] }), { code: 'unsupported_target' });
    await assert.rejects(buildBundle(pkg, f.master, { targets: ['p256'] }), { code: 'bad_argument' });
  });
});

// ---------------------------------------------------------------------------
// The post-quantum hybrid target: FORMAT §3.1, §3.2 and §9, draft-ietf-hpke-pq
// vectors (vectors/hpke_pq.json).

describe('X-Wing and hybrid keys (FORMAT §3.1, §3.2, §9)', () => {
  const X = FORMAT_HYBRID;
  const randomness = () => h(X.randomnessM + X.randomnessX);

  test('hybrid key pair from the recipient ikm', async () => {
    const seed = deriveXWingSeed(EX.recipientIkm);
    assert.equal(toHex(seed), X.seed);
    const expanded = shake256(seed, { dkLen: 96 });
    assert.equal(toHex(expanded.subarray(0, 32)), X.d);
    assert.equal(toHex(expanded.subarray(32, 64)), X.z);
    assert.equal(toHex(expanded.subarray(64)), X.skX);
    const kem = xwingKeyPair(seed);
    assert.equal(toHex(kem.publicKey), X.xwingPublicKey);
    assert.equal(toHex(await deriveScalar(SUITES.p256, EX.recipientIkm)), X.scalar);
    const key = await newKeyOfBytes(HYBRID, h(X.privateKey));
    assert.equal(toHex(key.publicKey), X.xwingPublicKey + X.point);
    assert.equal(toHex(new Uint8Array(await subtle.digest('SHA-256', key.publicKey))), X.fingerprint);
    assert.ok(isValidPublicKey(HYBRID, key.publicKey));
    for (const bad of [h(X.privateKey).subarray(0, 63), concat(h(X.seed), new Uint8Array(32)), concat(h(X.seed), bigIntToBytes(CURVES.p256.n, 32))]) {
      await assert.rejects(newKeyOfBytes(HYBRID, bad), { code: 'bad_private_key' });
    }
  });

  test('X-Wing encapsulation with the fixed randomness, decapsulation', () => {
    const kem = xwingKeyPair(h(X.seed));
    const { sharedSecret, enc } = xwingEncapsulate(kem.publicKey, randomness());
    assert.equal(toHex(enc), X.enc);
    assert.equal(toHex(enc.subarray(1088)), X.ctX);
    assert.equal(toHex(sharedSecret), X.sharedSecret);
    assert.equal(toHex(xwingDecapsulate(enc, kem)), X.sharedSecret);
    // A wrong ML-KEM ciphertext: implicit rejection, another secret.
    const other = enc.slice();
    other[5] ^= 1;
    assert.notEqual(toHex(xwingDecapsulate(other, kem)), X.sharedSecret);
    // rekey stops on an all-zero X25519 output (a low-order point), both ways.
    const lowOrder = kem.publicKey.slice();
    lowOrder.fill(0, 1184);
    assert.throws(() => xwingEncapsulate(lowOrder, randomness()), { code: 'bad_public_key' });
    const zeroCt = enc.slice();
    zeroCt.fill(0, 1088);
    assert.throws(() => xwingDecapsulate(zeroCt, kem), { code: 'bad_public_key' });
    // The ML-KEM half is checked before encapsulating.
    const badEk = kem.publicKey.slice();
    badEk.set([0xff, 0x0f], 0);
    assert.throws(() => xwingEncapsulate(badEk), { code: 'bad_public_key' });
    assert.throws(() => xwingEncapsulate(kem.publicKey.subarray(1)), { code: 'bad_public_key' });
    assert.throws(() => xwingDecapsulate(enc.subarray(1), kem), { code: 'bad_envelope' });
  });

  test('hpke-mlkem768-x25519-sha256-aes256gcm (0x14): key schedule, envelope, opened', async () => {
    const key = await newKeyOfBytes(HYBRID, h(X.privateKey));
    const info = concat(utf8('rekey/v1/grant'), Uint8Array.of(0x14), EX.vault, EX.recipient, Uint8Array.of(1), EX.record);
    assert.equal(toHex(info), X.info14);
    const ctx = await keySchedule(SUITES.xwing, AEADS[2], MODE.base, h(X.sharedSecret), info);
    assert.equal(toHex(ctx.key), X.key14);
    assert.equal(toHex(ctx.baseNonce), X.baseNonce14);
    const pkR = key.publicKey.subarray(0, 1216);
    const env = await sealGrant(0x14, pkR, EX.vault, EX.recipient, 1, EX.record, EX.recordKey, { ephemeral: randomness() });
    assert.equal(toHex(env), X.env14);
    const parsed = parseEnvelope(env);
    assert.equal(parsed.enc.length, 1120);
    assert.deepEqual(await openGrant(parsed, key.recipient, EX.vault, EX.recipient, 1, EX.record), EX.recordKey);
    await assert.rejects(openGrant(parsed, key.recipient, EX.vault, EX.recipient, 2, EX.record));
  });

  test('hpke-mlkem768-x25519-sha256-aes256gcm-export (0x15): exporter, grant key, envelope, opened', async () => {
    const key = await newKeyOfBytes(HYBRID, h(X.privateKey));
    const info = batchInfo(0x15, EX.vault, EX.recipient);
    assert.equal(toHex(info), X.info15);
    const pkR = key.publicKey.subarray(0, 1216);
    const { enc, ctx } = await setupBaseS(SUITES.xwing, pkR, info, { ephemeral: randomness() });
    assert.equal(toHex(enc), X.enc);
    assert.equal(toHex(ctx.exporterSecret), X.exporter);
    assert.equal(toHex(await ctx.export(grantKeyContext(1, EX.record), 32)), X.grantKey);
    // The batch sealer of the hybrid target takes the whole 1,281-byte key.
    const sealer = await BatchSealer.create(HYBRID, key.publicKey, EX.vault, EX.recipient, { ephemeral: randomness(), nonces: () => EX.nonce });
    assert.equal(sealer.scheme, 0x15);
    const env = await sealer.seal(1, EX.record, EX.recordKey);
    assert.equal(toHex(env), X.env15);
    assert.equal(env.length, 1184, 'FORMAT §4: a 32-byte secret in 15 is 1,184 bytes');
    assert.deepEqual(await openBatchGrant(parseEnvelope(env), key.recipient, EX.vault, EX.recipient, 1, EX.record), EX.recordKey);
    await assert.rejects(openBatchGrant(parseEnvelope(env), key.recipient, EX.vault, EX.keyPair, 1, EX.record));
  });

  test('aes256gcm-kek (0x20) around a hybrid private key; proof of possession verifies', async () => {
    const kek = await deriveKek(utf8('rekey worked example: master secret'), EX.vault, EX.recipient);
    const env = await wrapPrivateKey(kek, EX.vault, EX.recipient, EX.keyPair, h(X.privateKey), { nonce: EX.nonce });
    assert.equal(toHex(env), X.env20);
    assert.equal(env.length, 96);
    assert.equal(toHex(await unwrapPrivateKey(kek, EX.vault, EX.recipient, EX.keyPair, env)), X.privateKey);
    const key = await newKeyOfBytes(HYBRID, h(X.privateKey));
    const message = concat(h(X.popPrefix), key.publicKey);
    assert.equal(message.length, 1359);
    assert.ok(await verifyNewKeySignature(HYBRID, key.publicKey, message, h(X.popSignature)));
    assert.ok(await ecdsaVerify(CURVES.p256, h(X.point), message, h(X.popSignature)), 'by the P-256 half');
    assert.ok(!(await verifyNewKeySignature(HYBRID, key.publicKey, message.subarray(1), h(X.popSignature))));
  });

  test('without @noble/post-quantum and @noble/curves the library loads, P-256 is served, the hybrid target is unsupported_target', () => {
    // A child Node whose resolver refuses the two packages, as a page whose
    // import map does not serve them.
    const src = (f) => pathToFileURL(join(here, '..', 'src', f)).href;
    const hooks = `export async function resolve(s, c, next) {
      if (/^@noble\\/(post-quantum|curves)\\//.test(s)) throw Object.assign(new Error('not served: ' + s), { code: 'ERR_MODULE_NOT_FOUND' });
      return next(s, c);
    }`;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hooks)}));
      const lib = await import(${JSON.stringify(src('index.js'))});
      const out = { exports: Object.keys(lib).length, codes: [] };
      const pkg = (name) => ({ target: lib.TARGETS[name], candidates: [] });
      await lib.checkTargets(pkg('hpke-p256'));
      for (let i = 0; i < 2; i++) {
        try { await lib.checkTargets(pkg('hpke-mlkem768-x25519')); out.codes.push('served'); } catch (e) { out.codes.push(e.code); }
      }
      console.log(JSON.stringify(out));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
    assert.ok(out.exports > 40);
    assert.deepEqual(out.codes, ['unsupported_target', 'unsupported_target']);
  });

  test('generated hybrid keys: 64 private bytes that give back the key, P-256 signatures', async () => {
    const { key, privateBytes } = await generateNewKey(HYBRID);
    assert.equal(privateBytes.length, 64);
    assert.equal(key.publicKey.length, 1281);
    assert.ok(isValidPublicKey(HYBRID, key.publicKey));
    const again = await newKeyOfBytes(HYBRID, privateBytes);
    assert.deepEqual(again.publicKey, key.publicKey);
    const sig = await signWithNewKey(key, utf8('m'));
    assert.equal(sig.length, 64);
    assert.ok(await verifyNewKeySignature(HYBRID, key.publicKey, utf8('m'), sig));
  });
});

describe('draft-ietf-hpke-pq vectors: MLKEM768-X25519 (vectors/hpke_pq.json)', () => {
  const entries = vectors('hpke_pq.json').filter((v) => v.kem_id === 0x647a);
  test('the file has the two X-Wing entries', () => {
    assert.deepEqual(entries.map((v) => [v.mode, v.kdf_id, v.aead_id]), [
      [0, 1, 3],
      [0, 17, 3],
    ]);
  });
  for (const v of entries) {
    test(`kdf ${v.kdf_id}, aead ${v.aead_id}: key pair from ikmR, encapsulation from ikmE, shared secret`, async () => {
      const seed = deriveXWingSeed(h(v.ikmR));
      assert.equal(toHex(seed), v.skRm);
      const kem = xwingKeyPair(h(v.skRm));
      assert.equal(toHex(kem.publicKey), v.pkRm);
      const { sharedSecret, enc } = xwingEncapsulate(h(v.pkRm), h(v.ikmE));
      assert.equal(toHex(enc), v.enc);
      assert.equal(toHex(sharedSecret), v.shared_secret);
      assert.equal(toHex(xwingDecapsulate(h(v.enc), kem)), v.shared_secret);
      assert.equal(toHex(await decap(SUITES.xwing, h(v.enc), kem)), v.shared_secret);
      if (v.kdf_id !== 1) return; // the SHAKE256 key schedule is not rekey's
      // HKDF-SHA256 key schedule over the X-Wing secret (ChaCha20Poly1305's
      // id and 32-byte key go into it; the AEAD itself is not rekey's, so the
      // encryptions are not run). `info` is the hex-decoded ASCII as is.
      const ctx = await keySchedule(SUITES.xwing, { id: v.aead_id, nk: 32 }, v.mode, h(v.shared_secret), h(v.info));
      assert.equal(toHex(ctx.key), v.key);
      assert.equal(toHex(ctx.baseNonce), v.base_nonce);
      assert.equal(toHex(ctx.exporterSecret), v.exporter_secret);
      for (const [seq, e] of v.encryptions.entries()) {
        assert.equal(toHex(ctx.nonce()), e.nonce, `nonce ${seq}`);
        ctx.seq += 1;
      }
      for (const x of v.exports) {
        assert.equal(toHex(await ctx.export(h(x.exporter_context), x.L)), x.exported_value);
      }
    });
  }
});

describe('building for the P-521 and hybrid targets', () => {
  for (const target of ['hpke-p521', 'hpke-mlkem768-x25519']) {
    const T = TARGETS[target];
    test(`${target}: key kind ${T.keyByte}, grants ${T.scheme.toString(16)}; every grant opens with the new private key`, async () => {
      const f = await vaultFixture();
      const { json, holderKey, p256Holder } = await targetVariant(f, target);
      const built = await buildBundle(parsePackage(json, { principal: f.user.t }), f.master);
      assert.deepEqual(built.report.principals, [f.user.t, f.role.t]);
      assert.equal(built.report.holderGrants, 4);
      const { body, bundle, signatures } = parseBundle(built.bytes);
      assert.deepEqual(encodeSignedBundle(encodeBody(bundle), signatures), built.bytes);
      assert.equal(body[100], T.keyByte, 'the first part\'s key kind byte');
      const [mine, role] = bundle.parts;
      const digest = new Uint8Array(await subtle.digest('SHA-256', body));
      for (const [i, part] of bundle.parts.entries()) {
        assert.equal(part.target, target);
        assert.equal(part.publicKey.length, T.publicKeyLen);
        const ec = signatures[2 * i + 1];
        assert.equal(ec.kind, 2);
        assert.equal(ec.bytes.length, T.signingCurve.sigLen);
        assert.ok(await verifyNewKeySignature(T, part.publicKey, signedMessageOfDigest(digest, 2, part.principal), ec.bytes));
      }
      if (T.hybrid) {
        // Signed by the P-256 half (FORMAT §8).
        assert.ok(await ecdsaVerify(CURVES.p256, mine.publicKey.subarray(1216), signedMessageOfDigest(digest, 2, mine.principal), signatures[1].bytes));
      }
      // The account's private key under its KEK: the target's private bytes.
      const kek = await deriveKek(f.master, f.vault.b, f.user.b);
      const myBytes = await unwrapPrivateKey(kek, f.vault.b, f.user.b, mine.newKeyPair, mine.wrappedPrivate);
      assert.equal(myBytes.length, T.hybrid ? 64 : 66);
      assert.equal(mine.wrappedPrivate.length, 4 + 12 + myBytes.length + 16);
      const myKey = await newKeyOfBytes(T, myBytes);
      assert.deepEqual(myKey.publicKey, mine.publicKey);
      const open = (env, key, recipient, kind, subject) => openBatchGrant(parseEnvelope(env), key, f.vault.b, recipient, kind, subject);
      for (const g of mine.grants) {
        assert.equal(g.envelope[3], T.scheme);
        assert.deepEqual(await open(g.envelope, myKey.recipient, f.user.b, g.subjectKind, g.subjectId), f.secrets.get(bytesToUuid(g.replaces)));
      }
      assert.equal(mine.grants[0].envelope.length, T.hybrid ? 1184 : 197);
      // Holders: the account under its new key, the migrated holder under
      // its own key (of the target), the P-256 holder in 11, the pending one in 02.
      const byHolder = new Map(role.holderGrants.map((g) => [bytesToUuid(g.holder), g]));
      const own = byHolder.get(f.user.t);
      assert.equal(own.envelope[3], T.scheme);
      const newKek = await open(own.envelope, myKey.recipient, f.user.b, 2, role.newKeyPair);
      const viaMigrated = byHolder.get(f.migrated.t);
      assert.equal(viaMigrated.envelope[3], T.scheme);
      assert.deepEqual(await open(viaMigrated.envelope, holderKey, f.migrated.b, 2, role.newKeyPair), newKek);
      const viaP256 = byHolder.get(p256Holder.t);
      assert.equal(viaP256.envelope[3], 0x11);
      assert.deepEqual(await open(viaP256.envelope, f.migratedEc, uuidToBytes(p256Holder.t), 2, role.newKeyPair), newKek);
      assert.equal(byHolder.get(f.pending.t).envelope[3], 0x02);
      // The role's new key under the new KEK; its grants open.
      const roleKey = await newKeyOfBytes(T, await unwrapPrivateKey(newKek, f.vault.b, f.role.b, role.newKeyPair, role.wrappedPrivate));
      assert.deepEqual(roleKey.publicKey, role.publicKey);
      for (const g of role.grants) {
        assert.equal(g.envelope[3], T.scheme);
        assert.deepEqual(await open(g.envelope, roleKey.recipient, f.role.b, g.subjectKind, g.subjectId), f.secrets.get(bytesToUuid(g.replaces)));
      }
    });
  }

  test('a hybrid role is confirmed by a pending member: grants in 15 checked, receipt signed by the P-256 half', async () => {
    const f = await vaultFixture();
    const { json: variant } = await targetVariant(f, HYBRID.name);
    const { json, pendingMaster, role } = await roleChecksFixture(variant);
    assert.equal(json.roles[0].role_current.public_key.length, 2 * 1281);
    assert.ok(json.roles[0].role_grants.every((g) => g.envelope.startsWith('726b0115')));
    const { out, sent } = await confirmAgainst(json, pendingMaster, f);
    assert.deepEqual(out, { confirmed: 1, refused: [] });
    const r = sent[0].body;
    assert.equal(r.checked, 3);
    const message = receiptMessage(f.vault.b, f.run.b, f.role.b, role.newKeyPair, f.pending.b, 3);
    assert.ok(await verifyNewKeySignature(HYBRID, role.publicKey, message, fromHex(r.signature)));
    // Swapped grants are caught in 15 as in 11.
    const swapped = clone(json);
    const [a, b] = swapped.roles[0].role_grants;
    [a.envelope, b.envelope] = [b.envelope, a.envelope];
    const bad = await confirmAgainst(swapped, pendingMaster, f);
    assert.equal(bad.sent.length, 0);
    assert.match(bad.out.refused[0].reason, /2 of 3 migrated grants/);
  });
});

describe('one vault of a server of several vaults', () => {
  test('a server URL ending in /v1/vaults/NAME puts every API path under it', async () => {
    const seen = [];
    const api = new RekeyApi({
      server: 'http://host.invalid:8080/v1/vaults/berlin/',
      fetch: async (url) => {
        seen.push(url);
        return new Response(JSON.stringify({ algorithm: 'nope' }), { status: 200 });
      },
    });
    await assert.rejects(api.clientKdf());
    assert.deepEqual(seen, ['http://host.invalid:8080/v1/vaults/berlin/client-kdf']);
    const plain = new RekeyApi({ server: 'http://host.invalid:8080', fetch: async (url) => { seen.push(url); return new Response('{}', { status: 200 }); } });
    await assert.rejects(plain.clientKdf());
    assert.equal(seen[1], 'http://host.invalid:8080/v1/client-kdf');
  });

  test('a vault name that is not a path segment is refused before any request', () => {
    assert.throws(() => new RekeyApi({ server: 'http://h/v1/vaults/Berlin!' }), (e) => e.code === 'bad_argument');
    assert.throws(() => new RekeyApi({ server: 'http://h/v1/vaults/' }), (e) => e.code === 'bad_argument');
  });
});

// ---------------------------------------------------------------------------
// A migrated vault migrating again (e.g. P-256, then the hybrid target): the
// legacy keys are the previous run's target's, named in the package by
// `target` and `public_key`; their private keys are wrapped as a new key's;
// the legacy grants are that target's HPKE grants (batch and single-shot),
// bound to (vault, recipient, subject); signature kind 1 is ECDSA made as
// kind 2; a pending holder gets its KEK single-shot in its key's scheme.

/** A key of target `T` as a previous run left it: private bytes, the key (keys.js), the public key. */
async function earlierKey(T) {
  const { privateBytes } = await generateNewKey(T);
  const key = await newKeyOfBytes(T, privateBytes);
  return { bytes: privateBytes, key, publicKey: key.publicKey };
}

const againFixtures = new Map();

/** The package of an account whose vault migrated to `fromName` once and now migrates to `toName`. */
async function againFixture(fromName, toName) {
  const cacheKey = `${fromName}>${toName}`;
  if (againFixtures.has(cacheKey)) return againFixtures.get(cacheKey);
  const F = TARGETS[fromName];
  const ids = () => {
    const t = randomUuid();
    return { t, b: uuidToBytes(t) };
  };
  const [vault, run, user, userKp, role, roleKp, other, otherKp, migrated, migratedKp, pending, pendingKp, rsaPending, rsaPendingKp] =
    Array.from({ length: 14 }, ids);
  const [userKey, roleKey, otherKey, pendingKey] = await Promise.all([1, 2, 3, 4].map(() => earlierKey(F)));
  const migratedKey = await earlierKey(TARGETS[toName]); // a fellow member migrated in this run already
  const rsaPendingRsa = await rsaKeyPair(); // a member still on RSA (blocked in the first run, say)
  const master = randomBytes(32);
  const userKek = await deriveKek(master, vault.b, user.b);
  const roleKek = randomBytes(32);
  const otherKek = randomBytes(32);
  const secrets = new Map();
  const entry = (g, kind, subject, env) => ({ id: g.t, subject: { kind, id: subject }, envelope: toHex(env) });
  // One batch (FORMAT §4) of the previous run to `k`, addressed to `recipient`.
  const batchTo = async (k, recipient) => {
    const sealer = await BatchSealer.create(F, k.publicKey, vault.b, recipient.b);
    return async (kind, subject, secret = randomBytes(32)) => {
      const g = ids();
      secrets.set(g.t, secret);
      return entry(g, kind, subject, await sealer.seal(SUBJECT_KIND[kind], uuidToBytes(subject), secret));
    };
  };
  // A single-shot grant (FORMAT §3) to `k`; `sealedSubject` is what it is bound to.
  const singleTo = async (k, recipient, kind, subject, secret = randomBytes(32), sealedSubject = subject) => {
    const g = ids();
    secrets.set(g.t, secret);
    const env = await sealGrant(F.singleScheme, kemPublicKey(F, k.publicKey), vault.b, recipient.b, SUBJECT_KIND[kind], uuidToBytes(sealedSubject), secret);
    return entry(g, kind, subject, env);
  };
  const userBatchA = await batchTo(userKey, user);
  const userBatchB = await batchTo(userKey, user);
  const elsewhere = await batchTo(userKey, other); // to the account's key, bound to another recipient
  const otherTarget = Object.values(TARGETS).find((t) => t !== F);
  const otherPrefix = { 0x11: 65 + 12, 0x13: 133 + 12, 0x15: 1120 + 12 }[otherTarget.scheme];
  const userGrants = [
    await userBatchA('record_key', randomUuid()),
    await userBatchA('record_key', randomUuid()),
    await userBatchA('private_key', roleKp.t, roleKek),
    await userBatchB('record_key', randomUuid()),
    await singleTo(userKey, user, 'record_key', randomUuid()),
    { id: randomUuid(), subject: { kind: 'record_key', id: randomUuid() }, envelope: '726b01' }, // malformed
    // not legacy: RSA-OAEP, and HPKE of another target, neither opens with this key
    { id: randomUuid(), subject: { kind: 'record_key', id: randomUuid() }, envelope: toHex(concat(Uint8Array.of(0x72, 0x6b, 0x01, 0x02), randomBytes(256))) },
    {
      id: randomUuid(),
      subject: { kind: 'record_key', id: randomUuid() },
      envelope: toHex(concat(Uint8Array.of(0x72, 0x6b, 0x01, otherTarget.scheme), randomBytes(otherPrefix + 16 + 32))),
    },
    // could not decrypt: bound to another recipient; bound to another subject
    await elsewhere('record_key', randomUuid()),
    await singleTo(userKey, user, 'record_key', randomUuid(), randomBytes(32), randomUuid()),
  ];
  const roleBatch = await batchTo(roleKey, role);
  const roleGrants = [
    await roleBatch('record_key', randomUuid()),
    await roleBatch('record_key', randomUuid()),
    await roleBatch('record_key', randomUuid()),
    await singleTo(roleKey, role, 'record_key', randomUuid()),
  ];
  const legacyKey = async (kp, owner, kek, k) => ({
    id: kp.t,
    target: fromName,
    public_key: toHex(k.publicKey),
    wrapped_private: toHex(await wrapPrivateKey(kek, vault.b, owner.b, kp.b, k.bytes)),
  });
  const pendingHolder = (who, kp, k) => ({ state: 'pending', principal: who.t, key_pair: kp.t, target: fromName, public_key: toHex(k.publicKey) });
  const json = {
    format: 'rekey-package/2',
    vault: vault.t,
    run: run.t,
    principal: user.t,
    target: toName,
    legacy_key: await legacyKey(userKp, user, userKek, userKey),
    pending_grants: userGrants,
    candidates: [
      {
        principal: other.t,
        legacy_key: await legacyKey(otherKp, other, otherKek, otherKey),
        pending_grants: [await (await batchTo(otherKey, other))('record_key', randomUuid())],
        holders: [pendingHolder(user, userKp, userKey)],
      },
      {
        principal: role.t,
        legacy_key: await legacyKey(roleKp, role, roleKek, roleKey),
        pending_grants: roleGrants,
        holders: [
          { state: 'migrated', principal: migrated.t, key_pair: migratedKp.t, target: toName, public_key: toHex(migratedKey.publicKey) },
          pendingHolder(user, userKp, userKey),
          pendingHolder(pending, pendingKp, pendingKey),
          { state: 'pending', principal: rsaPending.t, key_pair: rsaPendingKp.t, public_key_spki: toHex(rsaPendingRsa.spki) },
        ],
      },
    ],
  };
  const f = {
    F,
    T: TARGETS[toName],
    json,
    master,
    vault,
    run,
    user,
    userKp,
    userKey,
    role,
    roleKp,
    roleKey,
    roleKek,
    other,
    migrated,
    migratedKp,
    migratedKey,
    pending,
    pendingKp,
    pendingKey,
    rsaPending,
    rsaPendingRsa,
    secrets,
    userGrants,
    roleGrants,
    batchTo,
  };
  againFixtures.set(cacheKey, f);
  return f;
}

const AGAIN = [
  ['hpke-p256', 'hpke-mlkem768-x25519'],
  ['hpke-p256', 'hpke-p521'],
  ['hpke-mlkem768-x25519', 'hpke-p256'],
  ['hpke-p521', 'hpke-p256'],
];

describe('a migrated vault migrates again', () => {
  for (const [from, to] of AGAIN) {
    test(`${from} → ${to}: legacy grants opened under their binding, kind 1 by the earlier key, pending holders in its single-shot scheme`, async () => {
      const f = await againFixture(from, to);
      const { F, T } = f;
      const pkg = parsePackage(JSON.stringify(f.json), { principal: f.user.t, vault: f.vault.t });
      assert.equal(pkg.legacyKey.target, F);
      assert.deepEqual(pkg.legacyKey.publicKey, f.userKey.publicKey);
      assert.equal(pkg.candidates[1].holders[2].target, F);
      assert.equal(pkg.candidates[1].holders[3].target, null, 'an RSA pending holder beside them');
      const built = await buildBundle(pkg, f.master);
      assert.deepEqual(built.report.principals, [f.user.t, f.role.t]);
      assert.deepEqual(built.report.skipped.map((x) => x.principal), [f.other.t]);
      assert.equal(built.report.rewrapped, 5 + 4);
      assert.equal(built.report.nonMigratable, 5);
      assert.equal(built.report.holderGrants, 4);

      const { body, bundle, signatures } = parseBundle(built.bytes);
      assert.deepEqual(encodeSignedBundle(encodeBody(bundle), signatures), built.bytes);
      const [mine, role] = bundle.parts;
      assert.deepEqual(mine.legacyKeyPair, f.userKp.b);
      assert.deepEqual(role.legacyKeyPair, f.roleKp.b);
      assert.equal(mine.target, to);

      // Kind 1: ECDSA by the earlier key over the §8 message with kind byte
      // 1 (P-256 for P-256 and hybrid keys, P-521 for P-521); kind 2 by the new key.
      const digest = new Uint8Array(await subtle.digest('SHA-256', body));
      const legacyPublic = [f.userKey.publicKey, f.roleKey.publicKey];
      assert.deepEqual(signatures.map((x) => x.kind), [1, 2, 1, 2]);
      for (const [i, part] of bundle.parts.entries()) {
        const [byLegacy, byNew] = signatures.slice(2 * i, 2 * i + 2);
        assert.deepEqual(byLegacy.principal, part.principal);
        assert.equal(byLegacy.bytes.length, F.signingCurve.sigLen);
        const m1 = signedMessageOfDigest(digest, 1, part.principal);
        const m2 = signedMessageOfDigest(digest, 2, part.principal);
        assert.equal(m1[25], 1);
        assert.ok(await verifyNewKeySignature(F, legacyPublic[i], m1, byLegacy.bytes), 'kind 1 verifies with the legacy key');
        assert.equal(await verifyNewKeySignature(F, legacyPublic[i], m2, byLegacy.bytes), false, 'over the kind 1 message only');
        assert.ok(await verifyNewKeySignature(T, part.publicKey, m2, byNew.bytes));
      }

      // The account's grants: re-wrapped to its new key, each to its secret.
      const kek = await deriveKek(f.master, f.vault.b, f.user.b);
      const myKey = await newKeyOfBytes(T, await unwrapPrivateKey(kek, f.vault.b, f.user.b, mine.newKeyPair, mine.wrappedPrivate));
      assert.deepEqual(myKey.publicKey, mine.publicKey);
      const open = (env, key, recipient, kind, subject) => openBatchGrant(parseEnvelope(env), key, f.vault.b, recipient, kind, subject);
      assert.equal(mine.grants.length, 5);
      for (const g of mine.grants) {
        assert.equal(g.envelope[3], T.scheme);
        assert.deepEqual(await open(g.envelope, myKey.recipient, f.user.b, g.subjectKind, g.subjectId), f.secrets.get(bytesToUuid(g.replaces)));
      }
      const reasons = new Map(mine.nonMigratable.map((n) => [bytesToUuid(n.grant), n.reason]));
      assert.deepEqual(
        f.userGrants.slice(5).map((g) => reasons.get(g.id)),
        [1, 3, 3, 2, 2],
        'malformed; RSA and another target\'s HPKE not legacy; another recipient\'s and another subject\'s binding could not decrypt',
      );

      // Holders of the role's new KEK.
      const byHolder = new Map(role.holderGrants.map((g) => [bytesToUuid(g.holder), g]));
      const own = byHolder.get(f.user.t);
      assert.deepEqual(own.holderKeyPair, mine.newKeyPair, 'the account under its new key');
      const newKek = await open(own.envelope, myKey.recipient, f.user.b, 2, role.newKeyPair);
      const viaMigrated = byHolder.get(f.migrated.t);
      assert.equal(viaMigrated.envelope[3], T.scheme);
      assert.deepEqual(await open(viaMigrated.envelope, f.migratedKey.key.recipient, f.migrated.b, 2, role.newKeyPair), newKek);
      // The pending holder of the earlier target: single-shot (10, 12, 14)
      // to its legacy key, bound to (vault, holder, the role's new key pair).
      const viaPending = byHolder.get(f.pending.t);
      assert.deepEqual(viaPending.holderKeyPair, f.pendingKp.b);
      assert.equal(viaPending.envelope[3], F.singleScheme);
      const pendingEnv = parseEnvelope(viaPending.envelope);
      assert.deepEqual(await openGrant(pendingEnv, f.pendingKey.key.recipient, f.vault.b, f.pending.b, 2, role.newKeyPair), newKek);
      await assert.rejects(openGrant(pendingEnv, f.pendingKey.key.recipient, f.vault.b, f.user.b, 2, role.newKeyPair));
      await assert.rejects(openGrant(pendingEnv, f.pendingKey.key.recipient, f.vault.b, f.pending.b, 2, f.roleKp.b));
      // The RSA pending holder: RSA-OAEP-SHA256 as before.
      const viaRsa = byHolder.get(f.rsaPending.t);
      assert.equal(viaRsa.envelope[3], 0x02);
      assert.deepEqual(await (await RsaPrivateKey.fromPkcs8(f.rsaPendingRsa.pkcs8)).decrypt(2, viaRsa.envelope.subarray(4)), newKek);

      // The role: its legacy key unlocked with the KEK the account's grant
      // carried; its grants (batch and single-shot) re-wrapped.
      const roleNew = await newKeyOfBytes(T, await unwrapPrivateKey(newKek, f.vault.b, f.role.b, role.newKeyPair, role.wrappedPrivate));
      assert.deepEqual(roleNew.publicKey, role.publicKey);
      assert.equal(role.grants.length, 4);
      for (const g of role.grants) {
        assert.deepEqual(await open(g.envelope, roleNew.recipient, f.role.b, g.subjectKind, g.subjectId), f.secrets.get(bytesToUuid(g.replaces)));
      }
    });
  }

  test('a rebuild reuses the opened HPKE grants, not for another subject', async () => {
    const f = await againFixture('hpke-p256', 'hpke-mlkem768-x25519');
    const pkg = parsePackage(f.json, { principal: f.user.t });
    const opened = new OpenedGrants();
    const a = await buildBundle(pkg, f.master, { opened });
    assert.equal(opened.size, 5 + 4);
    const b = await buildBundle(pkg, f.master, { opened });
    assert.equal(b.report.rewrapped, a.report.rewrapped);
    assert.equal(b.report.nonMigratable, 5);
    // The same grant id and bytes, now named for another record: the
    // secret kept from the first build is not reused, the binding refuses.
    const moved = clone(f.json);
    moved.pending_grants[0].subject.id = randomUuid();
    const c = await buildBundle(parsePackage(moved, { principal: f.user.t }), f.master, { opened });
    assert.equal(c.report.rewrapped, a.report.rewrapped - 1);
    assert.equal(c.report.nonMigratable, 6);
    const mine = parseBundle(c.bytes).bundle.parts[0];
    assert.deepEqual(
      mine.nonMigratable.filter((n) => bytesToUuid(n.grant) === moved.pending_grants[0].id).map((n) => n.reason),
      [2],
    );
    opened.wipe();
    assert.equal(opened.size, 0);
  });

  test('unlocking: a wrong password, a key not the package\'s, bytes not of the target; a candidate\'s mismatch is skipped', async () => {
    const f = await againFixture('hpke-p256', 'hpke-mlkem768-x25519');
    const pkg = parsePackage(f.json, { principal: f.user.t });
    await assert.rejects(buildBundle(pkg, randomBytes(32)), { code: 'wrong_password' });
    // The package names another P-256 key than the one the password unlocks.
    const swapped = clone(f.json);
    swapped.legacy_key.public_key = toHex(f.pendingKey.publicKey);
    await assert.rejects(buildBundle(parsePackage(swapped, { principal: f.user.t }), f.master), { code: 'package_refused' });
    // The wrapped bytes are a P-256 scalar; the package calls the key hybrid.
    const hybrid = await earlierKey(HYBRID);
    const relabelled = clone(f.json);
    relabelled.legacy_key.target = HYBRID.name;
    relabelled.legacy_key.public_key = toHex(hybrid.publicKey);
    await assert.rejects(buildBundle(parsePackage(relabelled, { principal: f.user.t }), f.master), /not a hpke-mlkem768-x25519 private key/);
    // An RSA key's PKCS#8 under the KEK where the package names a P-256 key.
    const rsa = await rsaKeyPair();
    const notEc = clone(f.json);
    notEc.legacy_key.wrapped_private = toHex(await wrapPrivateKey(await deriveKek(f.master, f.vault.b, f.user.b), f.vault.b, f.user.b, f.userKp.b, rsa.pkcs8));
    await assert.rejects(buildBundle(parsePackage(notEc, { principal: f.user.t }), f.master), { code: 'package_refused' });
    // The role's legacy key does not match: the role is left to another member.
    const roleSwapped = clone(f.json);
    roleSwapped.candidates[1].legacy_key.public_key = toHex(f.pendingKey.publicKey);
    const built = await buildBundle(parsePackage(roleSwapped, { principal: f.user.t }), f.master);
    assert.deepEqual(built.report.principals, [f.user.t]);
    assert.ok(built.report.skipped.some((x) => x.principal === f.role.t && /does not match/.test(x.reason)));
  });

  test('a legacy key of a target the caller does not accept is unsupported_target', async () => {
    const f = await againFixture('hpke-mlkem768-x25519', 'hpke-p256');
    const pkg = parsePackage(f.json, { principal: f.user.t });
    await assert.rejects(checkTargets(pkg, ['hpke-p256']), (e) => e.code === 'unsupported_target' && /legacy key/.test(e.message));
    await assert.rejects(buildBundle(pkg, f.master, { targets: ['hpke-p256', 'hpke-p521'] }), { code: 'unsupported_target' });
    await checkTargets(pkg, ['hpke-p256', 'hpke-mlkem768-x25519']);
  });

  test('package refusals: both forms, neither, half a form, a key not of its stated target', async () => {
    const f = await againFixture('hpke-p256', 'hpke-mlkem768-x25519');
    const hybrid = toHex((await earlierKey(HYBRID)).publicKey);
    const p256 = f.json.legacy_key.public_key;
    const spki = f.json.candidates[1].holders[3].public_key_spki;
    const places = {
      'legacy_key': (j) => j.legacy_key,
      'candidate legacy_key': (j) => j.candidates[1].legacy_key,
      'pending holder': (j) => j.candidates[1].holders[2],
    };
    const mutations = {
      'both forms': (k) => (k.public_key_spki = spki),
      'both forms, the RSA one first': (k) => {
        const { target, public_key } = k;
        delete k.target;
        delete k.public_key;
        Object.assign(k, { public_key_spki: spki, target, public_key });
      },
      'neither form': (k) => {
        delete k.target;
        delete k.public_key;
      },
      'target without public_key': (k) => delete k.public_key,
      'public_key without target': (k) => delete k.target,
      'spki with target only': (k) => {
        delete k.public_key;
        k.public_key_spki = spki;
      },
      'public_key null': (k) => (k.public_key = null),
      'target null': (k) => (k.target = null),
      'unknown target': (k) => (k.target = 'hpke-p384'),
      'a P-256 point named a hybrid key': (k) => (k.target = HYBRID.name),
      'a P-256 point named a P-521 key': (k) => (k.target = 'hpke-p521'),
      'a hybrid key named a P-256 key': (k) => (k.public_key = hybrid),
      'a point off the curve': (k) => (k.public_key = p256.slice(0, -2) + (p256.endsWith('00') ? '01' : '00')),
      'a compressed point': (k) => (k.public_key = '02' + p256.slice(2, 66)),
      'an RSA SPKI as public_key': (k) => (k.public_key = spki),
      'an EC point as public_key_spki': (k) => {
        k.public_key_spki = k.public_key;
        delete k.target;
        delete k.public_key;
      },
      'uppercase hex': (k) => (k.public_key = k.public_key.toUpperCase()),
      'the former curve member': (k) => (k.curve = 'p256'),
    };
    for (const [place, at] of Object.entries(places)) {
      for (const [name, mutate] of Object.entries(mutations)) {
        const j = clone(f.json);
        mutate(at(j));
        assert.throws(() => parsePackage(JSON.stringify(j), { principal: f.user.t }), { code: 'package_refused' }, `${place}: ${name}`);
      }
    }
    const j = clone(f.json);
    j.legacy_key.public_key_spki = spki;
    assert.throws(() => parsePackage(j, { principal: f.user.t }), /has both an RSA key/);
    delete j.legacy_key.public_key_spki;
    delete j.legacy_key.target;
    delete j.legacy_key.public_key;
    assert.throws(() => parsePackage(j, { principal: f.user.t }), /has no public key/);
    // The fixture itself, and a hybrid legacy key, are accepted.
    assert.ok(parsePackage(f.json, { principal: f.user.t }));
    const h2 = (await againFixture('hpke-mlkem768-x25519', 'hpke-p256')).json;
    assert.equal(parsePackage(h2, { principal: h2.principal }).legacyKey.publicKey.length, 1281);
  });

  for (const [from, to] of [['hpke-p256', 'hpke-mlkem768-x25519'], ['hpke-mlkem768-x25519', 'hpke-p256']]) {
    test(`${from} → ${to}: a pending member of the earlier target confirms the role, and a falsely disowned grant is caught`, async () => {
      const f = await againFixture(from, to);
      const { F, T } = f;
      const built = await buildBundle(parsePackage(f.json, { principal: f.user.t }), f.master);
      const role = built.bundle.parts[1];
      const viaPending = role.holderGrants.find((g) => equalBytes(g.holder, f.pending.b));
      const pendingMaster = randomBytes(32);
      const pendingKek = await deriveKek(pendingMaster, f.vault.b, f.pending.b);
      const records = [];
      const roleGrants = [];
      for (const g of role.grants) {
        const secret = f.secrets.get(bytesToUuid(g.replaces));
        records.push({ id: bytesToUuid(g.subjectId), ciphertext: toHex(await sealRecord(secret, f.vault.b, g.subjectId, utf8('a note'))) });
        roleGrants.push({ id: randomUuid(), recipient: f.role.t, subject: { kind: 'record_key', id: bytesToUuid(g.subjectId) }, envelope: toHex(g.envelope) });
      }
      const roleLegacy = f.json.candidates[1].legacy_key;
      const json = {
        format: 'rekey-role-checks/1',
        vault: f.vault.t,
        run: f.run.t,
        holder: f.pending.t,
        roles: [
          {
            role: f.role.t,
            // The member's legacy key: the earlier target's, state legacy.
            holder_keys: [
              {
                id: f.pendingKp.t,
                owner: f.pending.t,
                state: 'legacy',
                public_key: toHex(f.pendingKey.publicKey),
                wrapped_private: toHex(await wrapPrivateKey(pendingKek, f.vault.b, f.pending.b, f.pendingKp.b, f.pendingKey.bytes)),
              },
            ],
            role_current: { id: bytesToUuid(role.newKeyPair), owner: f.role.t, state: 'current', public_key: toHex(role.publicKey), wrapped_private: toHex(role.wrappedPrivate) },
            role_legacy: { id: roleLegacy.id, owner: f.role.t, state: 'legacy', public_key: roleLegacy.public_key, wrapped_private: roleLegacy.wrapped_private },
            holder_grants: [{ id: randomUuid(), recipient: f.pending.t, subject: { kind: 'private_key', id: bytesToUuid(role.newKeyPair) }, envelope: toHex(viaPending.envelope) }],
            role_grants: roleGrants,
            records,
            subject_keys: [],
            disowned: [],
          },
        ],
      };
      const { out, sent } = await confirmAgainst(json, pendingMaster, f);
      assert.deepEqual(out, { confirmed: 1, refused: [] });
      assert.equal(sent[0].body.checked, 4);
      const message = receiptMessage(f.vault.b, f.run.b, f.role.b, role.newKeyPair, f.pending.b, 4);
      assert.ok(await verifyNewKeySignature(T, role.publicKey, message, fromHex(sent[0].body.signature)));

      // A grant of the role declared unreadable that opens with the role's
      // legacy key (of the earlier target, reached through the member's
      // grant of the role's legacy KEK, in the earlier target's batch form).
      const g = f.roleGrants[0];
      const disowned = clone(json);
      const toPending = await f.batchTo(f.pendingKey, f.pending);
      const kekGrant = await toPending('private_key', roleLegacy.id, f.roleKek);
      disowned.roles[0].holder_grants.push({ id: kekGrant.id, recipient: f.pending.t, subject: kekGrant.subject, envelope: kekGrant.envelope });
      disowned.roles[0].disowned = [{ id: g.id, recipient: f.role.t, subject: g.subject, envelope: g.envelope }];
      disowned.roles[0].records.push({ id: g.subject.id, ciphertext: toHex(await sealRecord(f.secrets.get(g.id), f.vault.b, uuidToBytes(g.subject.id), utf8('x'))) });
      const caught = await confirmAgainst(disowned, pendingMaster, f);
      assert.equal(caught.sent.length, 0);
      assert.match(caught.out.refused[0].reason, /declared unreadable opens/);
      // One that truly does not open (bound to another subject) is accepted.
      const other = await (await f.batchTo(f.roleKey, f.role))('record_key', randomUuid());
      disowned.roles[0].disowned[0].envelope = other.envelope;
      const ok = await confirmAgainst(disowned, pendingMaster, f);
      assert.deepEqual(ok.out, { confirmed: 1, refused: [] });
      assert.equal(F.singleScheme, viaPending.envelope[3]);
    });
  }
});
