import{u as te,a as se,b as ne,c as re,d as ae,e as oe,f as ie,r as a,g as _,h as le,i as $,j as de,k as e,P as ce,l as ue,m as me,s as k,n as pe,L as ye,p as be,E,o as T,q as he,t as je,v as y}from"./index-B3Ftuz7q.js";import{M as fe,L as xe}from"./metricBuffer-DoArUW-Z.js";import"./uplot-Cf2ZdPUc.js";const ge=y(`
  query TrainingJob($id: ID!, $slug: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
    }
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        state
        attempt
        createdAt
        startedAt
        finishedAt
        reason
        cancelRequestedAt
        trainer
        target
        features
        hyperparameters
        validationFraction
        seed
        modelName
        metricKeys
        latestMetrics
        datasetVersion {
          id
          number
          dataset {
            id
            name
          }
        }
        modelVersion {
          id
          number
          metrics
          model {
            id
            name
          }
        }
      }
    }
  }
`),Se=y(`
  query JobMetricHistory($id: ID!, $key: String!, $maxPoints: Int!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: $maxPoints) {
          step
          value
        }
      }
    }
  }
`),ve=y(`
  query JobMetricKeys($id: ID!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metricKeys
      }
    }
  }
`),Pe=y(`
  subscription JobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) {
      cursor
      type
      state
      reason
      attempt
      step
      totalSteps
      epoch
      metrics
      examplesPerSecond
      etaSeconds
      modelVersion
    }
  }
`),$e=y(`
  mutation CancelTrainingJob($id: ID!) {
    cancelTrainingJob(id: $id) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
          cancelRequestedAt
        }
      }
      ...ErrorFields
    }
  }
`),Ee=1e3,Te=200;function ke(n){if(n.type==="progress")return null;const d=n.type==="state"&&n.state?k(n.state):n.type==="resumed"?`Resumed from step ${n.step??"?"}`:n.type==="checkpoint"?`Checkpoint at step ${n.step??"?"}`:n.type==="model"?"Model version registered":n.type;return{key:n.cursor,label:d,detail:n.reason??null,at:null}}function qe(){const n=te(),d=n.slug??"",m=n.jobId??"",{session:L}=se(),f=ne(),[{data:p,error:V,fetching:C},b]=re({query:ge,variables:{id:m,slug:d}});ae("Training job",d);const[,D]=oe($e),x=ie(),[K,O]=a.useState(null),c=a.useMemo(()=>new fe,[m]),[F,g]=a.useState(0),[h,Q]=a.useState(0),[H,R]=a.useState(-1),w=H>=0,[S,J]=a.useState(_),[r,B]=a.useState(null),[U,G]=a.useState(null);a.useEffect(()=>J(_()),[m]);const s=p?.node?.__typename==="TrainingJob"?p.node:null,j=s?.id,q=a.useRef(null);q.current=s?s.metricKeys:null;const A=s!==null;a.useEffect(()=>{if(!j||!A)return;let t=!0;const i=async()=>{if(h===0)return q.current??[];const o=await f.query(ve,{id:j},{requestPolicy:"network-only"}).toPromise();if(o.error)throw o.error;const u=o.data?.node;return u?.__typename==="TrainingJob"?u.metricKeys:[]};return(async()=>{const o=await i();return Promise.all(o.map(async u=>{const P=await f.query(Se,{id:j,key:u,maxPoints:Ee},{requestPolicy:"network-only"}).toPromise();if(P.error)throw P.error;const M=P.data?.node;return[u,M?.__typename==="TrainingJob"?M.metrics:[]]}))})().then(o=>{t&&(c.clear(),c.replay(Object.fromEntries(o)),g(u=>u+1),R(h))}).catch(o=>{t&&(O(o),R(h))}),()=>{t=!1}},[j,A,h,f,c]);const X=a.useCallback(t=>{t.type==="resumed"&&typeof t.step=="number"&&(c.truncateAfter(t.step),g(l=>l+1)),t.type==="progress"&&typeof t.step=="number"&&(c.append(t.step,t.metrics??{})&&g(l=>l+1),B({step:t.step,totalSteps:t.totalSteps??null,epoch:t.epoch??null,examplesPerSecond:t.examplesPerSecond??null,etaSeconds:t.etaSeconds??null}));const i=ke(t);if(i){const l={...i,at:new Date().toISOString()};J(o=>le(o,l,Te))}t.type==="state"&&t.state&&(G(t.state),$(t.state)&&(b({requestPolicy:"network-only"}),Q(l=>l+1))),t.type==="model"&&b({requestPolicy:"network-only"})},[c,b]),Y=w&&s!==null&&!$(s.state),N=de({query:Pe,variables:{jobId:m,after:null},pause:!Y,pick:t=>t.jobEvents,cursor:{of:t=>t.cursor,resume:t=>({jobId:m,after:t})},onEvent:X});if(!s)return e.jsx(ce,{query:{data:p,error:V,fetching:C},what:"the job",notFound:"Job not found",slug:d,children:"There is no training job here that you may see."});const v=s.state!=="QUEUED"&&s.state!=="RUNNING"?s.state:U??s.state,z=ue(p?.project?.viewerRole,L?.isAdmin??!1),W=me(z,"DEVELOPER")&&!$(v)&&!s.cancelRequestedAt&&!p?.project?.isArchived;async function Z(){if(!s)return;const t=s.id;await x.run(()=>D({id:t}),i=>i.cancelTrainingJob),b({requestPolicy:"network-only"})}const ee=[{key:"created",label:"Queued",detail:null,at:s.createdAt},...s.startedAt?[{key:"started",label:"Started",detail:null,at:s.startedAt}]:[],...s.cancelRequestedAt?[{key:"cancel",label:"Cancel requested",detail:null,at:s.cancelRequestedAt}]:[],...s.finishedAt?[{key:"finished",label:k(s.state),detail:s.reason??null,at:s.finishedAt}]:[]],I=s.latestMetrics??{};return e.jsxs("section",{children:[e.jsx(pe,{slug:d}),e.jsxs("h1",{children:["Training job: ",s.modelName," ",e.jsx("span",{className:`state state-${v.toLowerCase()}`,children:k(v)})]}),e.jsxs("p",{className:"muted",children:[s.trainer," predicting ",e.jsx("strong",{children:s.target}),s.datasetVersion&&e.jsxs(e.Fragment,{children:[" ","from"," ",e.jsxs(ye,{to:be.dataset(d,s.datasetVersion.dataset.name),children:[s.datasetVersion.dataset.name," v",s.datasetVersion.number]})]}),s.attempt>1&&` · attempt ${s.attempt}`]}),s.reason&&e.jsxs("p",{children:["Reason: ",s.reason]}),e.jsx(E,{error:K}),e.jsx(E,{error:x.problem}),N.error&&e.jsx(E,{error:N.error}),W&&e.jsx("button",{type:"button",className:"danger",disabled:x.busy,onClick:()=>void Z(),children:"Cancel job"}),r&&e.jsxs("p",{children:[e.jsx("progress",{"aria-label":"Training progress",max:r.totalSteps??void 0,value:r.step})," Step ",r.step,r.totalSteps!==null&&` of ${r.totalSteps}`,r.epoch!==null&&`, epoch ${r.epoch}`,r.examplesPerSecond!==null&&`, ${T(r.examplesPerSecond)} examples/s`,r.etaSeconds!==null&&`, about ${Math.round(r.etaSeconds)} s left`]}),e.jsx("h2",{children:"Loss and accuracy"}),w?e.jsx(xe,{buffer:c,revision:F}):e.jsx(he,{what:"the metric history"}),Object.keys(I).length>0&&e.jsxs(e.Fragment,{children:[e.jsx("h2",{children:"Latest metrics"}),e.jsx("dl",{className:"facts",children:Object.entries(I).map(([t,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:t}),e.jsx("dd",{children:T(i)})]},t))})]}),s.modelVersion&&e.jsxs("p",{children:["Registered model version ",s.modelVersion.model.name," v",s.modelVersion.number,"."]}),e.jsx("h2",{children:"Timeline"}),e.jsxs("ol",{className:"timeline","aria-label":"State timeline",children:[ee.map(t=>e.jsxs("li",{children:[e.jsx("strong",{children:t.label})," ",e.jsx("time",{dateTime:t.at??void 0,children:je(t.at)}),t.detail&&e.jsxs("span",{className:"muted",children:[" ",t.detail]})]},t.key)),S.dropped>0&&e.jsxs("li",{className:"muted",children:[S.dropped," earlier live events are not shown; the recorded ones are above."]}),S.rows.map(t=>e.jsxs("li",{children:[e.jsx("strong",{children:t.label})," ",e.jsx("span",{className:"muted",children:"(live)"}),t.detail&&e.jsxs("span",{className:"muted",children:[" ",t.detail]})]},t.key))]}),e.jsx("h2",{children:"Hyperparameters"}),e.jsxs("dl",{className:"facts",children:[Object.entries(s.hyperparameters??{}).map(([t,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:t}),e.jsx("dd",{children:T(i)})]},t)),e.jsxs("div",{children:[e.jsx("dt",{children:"validation fraction"}),e.jsx("dd",{children:s.validationFraction})]}),e.jsxs("div",{children:[e.jsx("dt",{children:"seed"}),e.jsx("dd",{children:s.seed})]})]})]})}export{qe as default};
